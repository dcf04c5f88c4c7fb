-- limit-conn: at most `conn` requests of each key in flight at once, across every worker of
-- the node. Up to `burst` more are admitted after waiting `delay` seconds; beyond that they get
-- 429. A request stops counting when it ends: answered, failed, or abandoned by its client
-- (the log phase, which always runs).
--
--   routes:
--     - name: reports
--       plugins:
--         limit-conn: { conn: 4, burst: 2, delay: 0.5, key: [consumer] }
local turnpike = require "turnpike"
local limit = require "turnpike.limit"
local metrics = require "turnpike.metrics"

local request = turnpike.request
-- Exported on /metrics as turnpike_plugin_limit_conn_rejected_total{route}.
local rejected = metrics.counter("limit_conn_rejected_total", "Requests limit-conn rejected, by route.", { "route" })

local properties = limit.common_properties()
properties.conn = { type = "integer", minimum = 1 }
properties.burst = { type = "integer", minimum = 0, default = 0 }
-- How long a request beyond `conn` (within the burst) waits before it goes on.
properties.delay = { type = "number", minimum = 0, maximum = 60, default = 0 }

-- The fields that decide the counting: changing one of them starts the counts afresh (requests
-- in flight then still end on the count they entered).
local COUNTING = { "conn", "burst", "key", "group" }

local prepared = setmetatable({}, { __mode = "k" })
local function prepare(conf)
  local p = prepared[conf]
  if not p then
    p = { key = limit.key_reader(conf.key), scope = limit.scope("limit-conn", conf, COUNTING) }
    prepared[conf] = p
  end
  return p
end

return {
  name = "limit-conn",
  version = "1.0",
  priority = 1003,

  schema = {
    type = "object",
    additionalProperties = false,
    required = { "conn" },
    properties = properties,
  },

  access = function(conf, ctx)
    local p = prepare(conf)
    local key = limit.request_key(conf, p.key, ctx)
    if not key then return end

    local conn, burst = conf.conn, conf.burst
    if conf.cluster then
      conn = limit.node_share(conn, true)
      burst = limit.node_share(burst, true, 0)
    end
    local scope = p.scope(request.get_route())
    local ok, in_flight = limit.conn_enter(scope, key, conn + burst)
    if not ok then
      rejected:inc(1, request.get_route() or "-")
      return limit.reject(conf, conf.delay > 0 and conf.delay or 1)
    end
    -- Counted from here on: the log phase gives it back.
    ctx.limit_conn_scope, ctx.limit_conn_key = scope, key
    if in_flight > conn and conf.delay > 0 then turnpike.sleep(conf.delay) end
  end,

  log = function(conf, ctx)
    local scope = ctx.limit_conn_scope
    if scope then
      limit.conn_leave(scope, ctx.limit_conn_key)
      ctx.limit_conn_scope = nil
    end
  end,
}
