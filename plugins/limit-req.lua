-- limit-req: smooths each key's requests to `rate` per second (a leaky bucket). Requests above
-- the rate wait their turn, up to `burst` of them; beyond that they get 429 and Retry-After.
-- With `nodelay`, the burst passes at once instead of waiting (it still uses up the bucket).
--
--   routes:
--     - name: login
--       plugins:
--         limit-req: { rate: 5, burst: 10, key: [client_ip] }
--
-- The bucket lives in the node's rate-limit table (turnpike.limit), so the rate holds across
-- workers and reloads; a change of rate, burst, key or group starts the buckets afresh.
local turnpike = require "turnpike"
local limit = require "turnpike.limit"
local metrics = require "turnpike.metrics"

local request = turnpike.request
-- Exported on /metrics as turnpike_plugin_limit_req_rejected_total{route}.
local rejected = metrics.counter("limit_req_rejected_total", "Requests limit-req rejected, by route.", { "route" })

local properties = limit.common_properties()
properties.rate = { type = "number", minimum = 0.001 }   -- requests per second
properties.burst = { type = "number", minimum = 0, default = 0 }
-- Let the burst through at once instead of spacing it out at `rate`.
properties.nodelay = { type = "boolean", default = false }

-- The fields that decide the counting: changing one of them resets the buckets.
local COUNTING = { "rate", "burst", "key", "group" }

local prepared = setmetatable({}, { __mode = "k" })
local function prepare(conf)
  local p = prepared[conf]
  if not p then
    p = { key = limit.key_reader(conf.key), scope = limit.scope("limit-req", conf, COUNTING) }
    prepared[conf] = p
  end
  return p
end

return {
  name = "limit-req",
  version = "1.0",
  priority = 1001,

  schema = {
    type = "object",
    additionalProperties = false,
    required = { "rate" },
    properties = properties,
  },

  access = function(conf, ctx)
    local p = prepare(conf)
    local key = limit.request_key(conf, p.key, ctx)
    if not key then return end

    local rate, burst = conf.rate, conf.burst
    if conf.cluster then
      rate = limit.node_share(rate, false, 0.001)
      burst = limit.node_share(burst, true, 0)
    end
    local ok, delay = limit.leaky_bucket(p.scope(request.get_route()), key, rate, burst)
    if not ok then
      rejected:inc(1, request.get_route() or "-")
      return limit.reject(conf, delay)
    end
    if delay > 0.001 and not conf.nodelay then turnpike.sleep(delay) end
  end,
}
