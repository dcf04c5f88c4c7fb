-- Test plugin: records into metrics of its own (turnpike.metrics) from the X-Metered header.
local turnpike = require "turnpike"
local metrics = require "turnpike.metrics"

local hits = metrics.counter("metered_hits_total", "Requests metered saw.", { "route", "kind" })
local level = metrics.gauge("metered_level", "The last X-Level seen (per worker share).")
local size = metrics.histogram("metered_size", "X-Size values.", { "route" }, { 1, 10, 100 })
local capped = metrics.counter("metered_capped_total", "One series per X-Key, at most 2.", { "key" },
                               { max_series = 2 })

return {
  name = "metered", version = "1", priority = 900,
  schema = { type = "object", properties = {}, additionalProperties = false },
  access = function(conf, ctx)
    local route = turnpike.request.get_route() or "-"
    hits:inc(1, { route, turnpike.request.get_header("x-kind") or "none" })
    local l = tonumber(turnpike.request.get_header("x-level") or "")
    if l then level:set(l) end
    local s = tonumber(turnpike.request.get_header("x-size") or "")
    if s then size:observe(s, { route }) end
    local k = turnpike.request.get_header("x-key")
    if k then capped:inc(1, k) end
  end,
}
