-- turnpike.limit: node-wide rate-limit counters, exact across the node's workers.
--
--   local limit = require "turnpike.limit"
--   local ok, remaining, reset = limit.fixed_window(scope, key, 100, 60)   -- 100 per minute
--   local ok, remaining, reset = limit.sliding_window(scope, key, 100, 60)
--   local ok, delay = limit.leaky_bucket(scope, key, 10, 20)   -- 10/s, 20 may queue (wait `delay`)
--   local ok, in_flight = limit.conn_enter(scope, key, 50)     -- ... limit.conn_leave(scope, key)
--
-- `scope` says whose counter it is (a plugin, its conf, a route: see limit.scope) and `key` who
-- is counted (see limit.key_reader); together they name one counter. Each call is one step of
-- the C++ table (src/lua/limiter.cc, include/turnpike/lua/limiter.h): rotating the window,
-- checking and counting happen under one lock, so two workers cannot both take the last request.
--
-- These six calls are the whole store interface: a remote store (Redis, batched) can implement
-- the same calls and the plugins need not change (docs/plugins-limits.md, "The store seam").
local ffi = require "ffi"

ffi.cdef [[
typedef struct tp_limit_out { double remaining, reset, delay, count; } tp_limit_out;
typedef struct tp_limit_stats { double capacity, keys, evictions, bytes, slot_bytes; } tp_limit_stats;
int tp_limit_window(const char* scope, size_t slen, const char* key, size_t klen, int kind,
                    double limit, double period, double cost, tp_limit_out* out);
int tp_limit_leaky(const char* scope, size_t slen, const char* key, size_t klen, double rate,
                   double burst, tp_limit_out* out);
int tp_limit_conn_enter(const char* scope, size_t slen, const char* key, size_t klen, double max,
                        tp_limit_out* out);
void tp_limit_conn_leave(const char* scope, size_t slen, const char* key, size_t klen);
int tp_limit_cluster_nodes(void);
void tp_limit_stats_get(tp_limit_stats* out);
]]

local C = ffi.C
local out = ffi.new("tp_limit_out")
local type, tostring, tonumber, floor, max = type, tostring, tonumber, math.floor, math.max
local setmetatable = setmetatable

local limit = {}

-- Counters ------------------------------------------------------------------------------------

local FIXED, SLIDING = 0, 1

-- At most `count` requests (`cost` each, default 1) per `period` seconds; the window opens with
-- the key's first request. Returns allowed, remaining, reset (seconds until the window ends; for
-- a rejected request, until one would fit). A rejected request is not counted.
function limit.fixed_window(scope, key, count, period, cost)
  local ok = C.tp_limit_window(scope, #scope, key, #key, FIXED, count, period, cost or 1, out)
  return ok == 1, tonumber(out.remaining), tonumber(out.reset)
end

-- As fixed_window, over the last `period` seconds: windows aligned to the clock, the previous
-- one weighted by how much of it the last `period` seconds still cover.
function limit.sliding_window(scope, key, count, period, cost)
  local ok = C.tp_limit_window(scope, #scope, key, #key, SLIDING, count, period, cost or 1, out)
  return ok == 1, tonumber(out.remaining), tonumber(out.reset)
end

-- Leaky bucket: `rate` requests per second; up to `burst` more may wait their turn. Returns
-- true and how long this request should wait (0 when the key is idle), or false and the
-- seconds after which a request would fit.
function limit.leaky_bucket(scope, key, rate, burst)
  local ok = C.tp_limit_leaky(scope, #scope, key, #key, rate, burst, out)
  return ok == 1, tonumber(out.delay), tonumber(out.count)
end

-- Requests in flight: true and the count with this one, while fewer than `max` were in flight;
-- false and the count otherwise. Pair every admitted enter with one conn_leave (the log phase).
function limit.conn_enter(scope, key, max_in_flight)
  local ok = C.tp_limit_conn_enter(scope, #scope, key, #key, max_in_flight, out)
  return ok == 1, tonumber(out.count)
end

function limit.conn_leave(scope, key)
  C.tp_limit_conn_leave(scope, #scope, key, #key)
end

-- The live gateway node count a cluster-wide limit is shared by (config `cluster.nodes`).
function limit.cluster_nodes()
  return C.tp_limit_cluster_nodes()
end

-- This node's share of a cluster-wide `total`: total / nodes, rounded down so the nodes
-- together never admit more than the total, and at least `floor_at` (default 1).
function limit.node_share(total, integer, floor_at)
  local share = total / C.tp_limit_cluster_nodes()
  if integer then share = floor(share) end
  return max(share, floor_at or 1)
end

-- The table: { capacity, keys (live), evictions, bytes, slot_bytes }. Scans the whole table:
-- for tests and diagnostics, not per request.
function limit.stats()
  local s = ffi.new("tp_limit_stats")
  C.tp_limit_stats_get(s)
  return { capacity = tonumber(s.capacity), keys = tonumber(s.keys),
           evictions = tonumber(s.evictions), bytes = tonumber(s.bytes),
           slot_bytes = tonumber(s.slot_bytes) }
end

-- Keys ----------------------------------------------------------------------------------------
-- A key is a list of sources whose values are joined: { "consumer", "header:x-tenant" } counts
-- each tenant of each consumer apart.
--   client_ip        the client's address
--   consumer         the authenticated consumer's name (an auth plugin must run first)
--   route            the matched route's name
--   host             the Host the client sent
--   header:<name>    a request header
--   param:<name>     a route path parameter ({name} in the route's path)

limit.KEY_PATTERN = "^(client_ip|consumer|route|host|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|param:[A-Za-z0-9_]+)$"

local turnpike = require "turnpike"
local request = turnpike.request
local find, sub, concat = string.find, string.sub, table.concat

local function source_reader(source)
  if source == "client_ip" then return function() return request.get_client_ip() end end
  if source == "consumer" then return function(ctx) return ctx.consumer_name end end
  if source == "route" then return function() return request.get_route() end end
  if source == "host" then return function() return request.get_host() end end
  local colon = find(source, ":", 1, true)
  local kind, name = sub(source, 1, colon - 1), sub(source, colon + 1)
  if kind == "header" then return function() return request.get_header(name) end end
  return function() return request.get_param(name) end
end

-- A function(ctx) -> the key of this request from the list of sources, or nil when one of them
-- is missing (no such header, no consumer). Sources are joined with a NUL byte, which no header
-- value can hold, so ("a", "b c") and ("a b", "c") stay apart.
function limit.key_reader(sources)
  local readers = {}
  for i, source in ipairs(sources) do readers[i] = source_reader(source) end
  if #readers == 1 then
    local only = readers[1]
    return function(ctx)
      local v = only(ctx)
      if v == nil or v == "" then return nil end
      return v
    end
  end
  local n = #readers
  local parts = {}
  return function(ctx)
    for i = 1, n do
      local v = readers[i](ctx)
      if v == nil or v == "" then return nil end
      parts[i] = v
    end
    return concat(parts, "\0", 1, n)
  end
end

-- Scopes --------------------------------------------------------------------------------------
-- Counters are per plugin, per conf and per route: two routes with the same conf count apart,
-- unless they name the same `group`. The conf part is a hash of the fields that decide the
-- counting (`fields`), so a reload keeps the counters and only a change of those fields starts
-- them afresh.

local json = require "turnpike.json"
local crypto = require "turnpike.crypto"

-- A function(route_name) -> scope string for `conf` of plugin `name`, made once per conf
-- table (a new configuration brings new tables; equal counting fields give equal scopes).
function limit.scope(name, conf, fields)
  local relevant = {}
  for _, field in ipairs(fields) do
    local v = conf[field]
    if v ~= nil then relevant[field] = v end
  end
  local id = sub(crypto.hex(crypto.sha256(json.encode(relevant))), 1, 16)
  local prefix = name .. "/" .. id .. "/"
  if conf.group then
    local scope = prefix .. "group:" .. conf.group
    return function() return scope end
  end
  local by_route = {}
  return function(route)
    route = route or ""
    local scope = by_route[route]
    if not scope then
      scope = prefix .. "route:" .. route
      by_route[route] = scope
    end
    return scope
  end
end

-- Plugin helpers ------------------------------------------------------------------------------

-- The conf fields the three bundled limit plugins share: a fresh table per call, for a plugin's
-- schema.properties.
function limit.common_properties()
  return {
    -- Who is counted: a list of sources (see Keys above), joined.
    key = { type = "array", minItems = 1, maxItems = 8, default = { "client_ip" },
            items = { type = "string", pattern = limit.KEY_PATTERN } },
    -- When a key source is missing: count the request under its client address instead, or
    -- let it through uncounted.
    key_missing = { type = "string", enum = { "client_ip", "allow" }, default = "client_ip" },
    -- Routes whose conf names the same group share counters.
    group = { type = "string", minLength = 1, maxLength = 128 },
    -- The limit is the cluster's total: this node enforces total / cluster.nodes.
    cluster = { type = "boolean", default = false },
    rejected_code = { type = "integer", minimum = 200, maximum = 599, default = 429 },
    rejected_msg = { type = "string", minLength = 1, maxLength = 1024 },
  }
end

local client_ip_reader = source_reader("client_ip")

-- The key of this request under `conf` (reader from key_reader): nil when it should pass
-- uncounted (a source is missing and conf.key_missing is "allow").
function limit.request_key(conf, reader, ctx)
  local key = reader(ctx)
  if key then return key end
  if conf.key_missing == "allow" then return nil end
  return client_ip_reader(ctx) or ""
end

local JSON_TYPE = "application/json"

-- The rejection body for conf: {"error":"too_many_requests","message":...}, made once per conf.
local bodies = setmetatable({}, { __mode = "k" })
function limit.rejection_body(conf)
  local body = bodies[conf]
  if not body then
    body = json.encode({ error = "too_many_requests", message = conf.rejected_msg or "rate limit exceeded" })
    bodies[conf] = body
  end
  return body
end

-- Seconds for Retry-After / X-RateLimit-Reset: a whole number, at least 1 while anything is
-- pending (RFC 9110 §10.2.3: delay-seconds is an integer).
function limit.whole_seconds(seconds)
  if seconds <= 0 then return 0 end
  return max(1, math.ceil(seconds - 1e-9))
end

-- Answers conf.rejected_code with the JSON body; `headers` may carry more fields.
function limit.reject(conf, retry_after, headers)
  headers = headers or {}
  headers["content-type"] = JSON_TYPE
  headers["retry-after"] = tostring(max(1, limit.whole_seconds(retry_after)))
  return turnpike.exit(conf.rejected_code, limit.rejection_body(conf), headers)
end

return limit
