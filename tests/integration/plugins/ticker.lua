-- Test plugin: timers. init_worker starts a periodic timer counting ticks in the shared
-- dictionary `ticks` (and premature runs under "premature"), and a one-shot timer that raises;
-- header_filter reports the counts, so a test sees the timers of every worker from any request.
local turnpike = require "turnpike"

local M = {
  name = "ticker",
  version = "1.0",
  priority = 10,
  schema = { type = "object", properties = { tag = { type = "string", default = "" } }, additionalProperties = false },
}

function M.init_worker()
  local dict = turnpike.shared.ticks
  assert(turnpike.timer.every(0.05, function(premature, key)
    if premature then
      dict:incr("premature", 1, 0)
      return
    end
    dict:incr(key, 1, 0)
  end, "ticks"))
  assert(turnpike.timer.at(0.01, function() error("ticker: a timer that raises") end))
end

function M.header_filter(conf, ctx)
  local dict = turnpike.shared.ticks
  turnpike.response.set_header("x-ticks", tostring(dict:get("ticks") or 0))
  turnpike.response.set_header("x-premature", tostring(dict:get("premature") or 0))
  local pending, running = turnpike.timer.counts()
  turnpike.response.set_header("x-timers", pending .. "/" .. running)
end

return M
