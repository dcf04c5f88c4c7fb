-- Bench plugin (a user plugin, so it runs interpreted): the fixed-window counter of
-- bench/peers/proxy-openresty.conf.in, one shared-dict incr per request keyed by consumer and
-- second. Used by bench/run.sh's turnpike-lua case next to key-auth.
local turnpike = require "turnpike"
local floor, time = math.floor, os.time

return {
  name = "fixed-window",
  version = "1",
  priority = 1001,
  schema = {
    type = "object",
    properties = { limit = { type = "integer", default = 100000000 } },
  },
  access = function(conf, ctx)
    local key = (ctx.consumer_name or "-") .. ":" .. floor(time())
    local n = turnpike.shared.limits:incr(key, 1, 0, 2)
    if n and n > conf.limit then return turnpike.exit(429) end
  end,
}
