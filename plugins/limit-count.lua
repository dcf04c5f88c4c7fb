-- limit-count: at most `count` requests per `time_window` seconds for each key (a client
-- address, a consumer, a header, a route parameter, or a combination), counted across every
-- worker of the node. Every answer tells the client where it stands (X-RateLimit-Limit,
-- -Remaining, -Reset); a request over the limit gets 429 and Retry-After.
--
--   routes:
--     - name: api
--       plugins:
--         key-auth: {}
--         limit-count: { count: 100, time_window: 60, key: [consumer] }
--
-- The counters live in the node's rate-limit table (turnpike.limit): a reload keeps them; a
-- change of count, time_window, window, key or group starts them afresh.
local turnpike = require "turnpike"
local limit = require "turnpike.limit"
local metrics = require "turnpike.metrics"

local request, response = turnpike.request, turnpike.response
-- Exported on /metrics as turnpike_plugin_limit_count_rejected_total{route}.
local rejected = metrics.counter("limit_count_rejected_total", "Requests limit-count rejected, by route.", { "route" })

local properties = limit.common_properties()
properties.count = { type = "integer", minimum = 1 }
properties.time_window = { type = "number", minimum = 0.001, maximum = 31536000 }
-- fixed: the window opens with a key's first request; sliding: the last time_window seconds,
-- estimated from two clock-aligned windows (no burst of 2 × count across a window edge).
properties.window = { type = "string", enum = { "fixed", "sliding" }, default = "fixed" }
-- Send X-RateLimit-Limit, -Remaining and -Reset.
properties.show_headers = { type = "boolean", default = true }

-- The fields that decide the counting: changing one of them resets the counters.
local COUNTING = { "count", "time_window", "window", "key", "group" }

-- Per conf table: the key reader and the scope by route, made on first use.
local prepared = setmetatable({}, { __mode = "k" })
local function prepare(conf)
  local p = prepared[conf]
  if not p then
    p = { key = limit.key_reader(conf.key), scope = limit.scope("limit-count", conf, COUNTING),
          count = limit[conf.window == "sliding" and "sliding_window" or "fixed_window"],
          limit_header = tostring(conf.count) }
    prepared[conf] = p
  end
  return p
end

return {
  name = "limit-count",
  version = "1.0",
  priority = 1002,

  schema = {
    type = "object",
    additionalProperties = false,
    required = { "count", "time_window" },
    properties = properties,
  },

  access = function(conf, ctx)
    local p = prepare(conf)
    local key = limit.request_key(conf, p.key, ctx)
    if not key then return end

    local allowed_count, limit_header = conf.count, p.limit_header
    if conf.cluster then
      allowed_count = limit.node_share(conf.count, true)
      limit_header = tostring(allowed_count)
    end
    local ok, remaining, reset = p.count(p.scope(request.get_route()), key, allowed_count, conf.time_window)
    reset = limit.whole_seconds(reset)

    if not ok then
      local headers
      if conf.show_headers then
        headers = { ["x-ratelimit-limit"] = limit_header, ["x-ratelimit-remaining"] = "0",
                    ["x-ratelimit-reset"] = tostring(reset) }
      end
      rejected:inc(1, request.get_route() or "-")
      return limit.reject(conf, reset, headers)
    end
    -- Response headers set now are applied to whatever answers the request (the upstream's
    -- response or a later plugin's), without a header_filter call of its own.
    if conf.show_headers then
      response.set_header("x-ratelimit-limit", limit_header)
      response.set_header("x-ratelimit-remaining", remaining)
      response.set_header("x-ratelimit-reset", reset)
    end
  end,
}
