-- turnpike.mirror: copies of requests sent to another server in the background — the client's
-- request never waits for them. Per worker, a named queue holds at most `queue_size` copies and
-- sends at most `concurrency` at a time, each ended by `timeout`; a copy offered to a full queue
-- is dropped and counted at once.
--
--   local mirror = require "turnpike.mirror"
--   local q = assert(mirror.queue("shadow", { uri = "http://10.0.0.7:8080", queue_size = 1000,
--                                            concurrency = 8, timeout = 1 }))
--   q:send("POST", "/orders?x=1", "content-type: application/json\n", '{"id":1}')
--   q:send(method, target, headers, body, primary_status)  -- compare the mirror's status too
--   q:send(method, target, headers, body, primary_status, body_crc)  -- and its body (turnpike.hash.crc32)
--   mirror.find("shadow"):stats()  -- { queued, sent, failed, dropped, skipped, compared, differed,
--                                  --   body_compared, body_differed, waiting, in_flight }
--
-- The C side is src/lua/mirror.cc (include/turnpike/lua/mirror.h). Make a queue once per conf
-- (it is looked up by name), not per request: a send copies the request and returns.
local ffi = require "ffi"

ffi.cdef [[
typedef struct tp_mirror tp_mirror;
typedef struct tp_mirror_stats {
  uint64_t queued, sent, failed, dropped, skipped, compared, differed, waiting, in_flight;
  uint64_t body_compared, body_differed;
} tp_mirror_stats;
tp_mirror* tp_mirror_queue(const char* name, size_t name_len, const char* host, size_t host_len,
                           const char* port, size_t port_len, int32_t queue_size,
                           int32_t concurrency, int32_t timeout_ms);
tp_mirror* tp_mirror_find(const char* name, size_t name_len);
int tp_mirror_send(tp_mirror* q, const char* method, size_t method_len, const char* target,
                   size_t target_len, const char* headers, size_t headers_len, const char* body,
                   size_t body_len, int has_body, int32_t primary_status, int has_body_crc,
                   uint32_t body_crc);
void tp_mirror_skip(tp_mirror* q);
void tp_mirror_get_stats(const tp_mirror* q, tp_mirror_stats* out);
]]

local C = ffi.C
local type, tonumber, tostring, floor = type, tonumber, tostring, math.floor
local match = string.match

local stats_out = ffi.new("tp_mirror_stats")

local mirror = {}

local Queue = {}
Queue.__index = Queue

-- "http://host[:port][/]" → host, port; nil and why otherwise. An IPv6 literal keeps its
-- brackets (the client connects to what is inside them).
function mirror.parse_uri(uri)
  if type(uri) ~= "string" then return nil, "uri must be a string" end
  local hostport = match(uri, "^http://([^/?#]+)/?$")
  if not hostport then return nil, "uri must be http://host[:port]" end
  local host, port = match(hostport, "^(%[[^%]]+%]):?(%d*)$")
  if not host then host, port = match(hostport, "^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil, "uri must be http://host[:port]" end
  if port == "" then port = "80" end
  local n = tonumber(port)
  if n < 1 or n > 65535 then return nil, "uri: port out of range" end
  return host, port
end

-- The worker's queue `name` with options { uri, queue_size = 1000, concurrency = 8,
-- timeout = 1 (seconds) }. Returns the queue, or nil and why (outside a worker: nil, "no worker").
function mirror.queue(name, opts)
  if type(name) ~= "string" or name == "" then return nil, "name must be a non-empty string" end
  opts = opts or {}
  local host, port = mirror.parse_uri(opts.uri)
  if not host then return nil, port end
  local size = opts.queue_size or 1000
  local concurrency = opts.concurrency or 8
  local timeout_ms = floor((opts.timeout or 1) * 1000 + 0.5)
  if size < 1 or concurrency < 1 or timeout_ms < 1 then
    return nil, "queue_size and concurrency must be >= 1, timeout > 0"
  end
  host = match(host, "^%[(.*)%]$") or host
  local q = C.tp_mirror_queue(name, #name, host, #host, port, #port, size, concurrency, timeout_ms)
  if q == nil then return nil, "no worker" end
  return setmetatable({ q = q, name = name }, Queue)
end

-- The worker's queue `name` when one was made (by mirror.queue), else nil: to read its stats.
function mirror.find(name)
  if type(name) ~= "string" then return nil end
  local q = C.tp_mirror_find(name, #name)
  if q == nil then return nil end
  return setmetatable({ q = q, name = name }, Queue)
end

-- Offers a copy: `headers` as "name: value\n" lines; `body` nil for none. `primary_status`
-- (optional) is counted against the mirror's answer (stats compared / differed); `body_crc`
-- (optional, the primary response body's turnpike.hash.crc32) against the CRC-32 of the mirror's
-- response body (stats body_compared / body_differed; the mirror's body is digested as it
-- arrives, never kept). Returns true when queued, false and "dropped" when the queue was full.
function Queue:send(method, target, headers, body, primary_status, body_crc)
  headers = headers or ""
  local has_body = body ~= nil
  body = body or ""
  local rc = C.tp_mirror_send(self.q, method, #method, target, #target, headers, #headers,
                              body, #body, has_body and 1 or 0, primary_status or 0,
                              body_crc and 1 or 0, body_crc or 0)
  if rc ~= 0 then return false, "dropped" end
  return true
end

-- Counts a copy the caller chose not to send (stats.skipped).
function Queue:skip() C.tp_mirror_skip(self.q) end

function Queue:stats()
  C.tp_mirror_get_stats(self.q, stats_out)
  local s = stats_out
  return {
    queued = tonumber(s.queued), sent = tonumber(s.sent), failed = tonumber(s.failed),
    dropped = tonumber(s.dropped), skipped = tonumber(s.skipped), compared = tonumber(s.compared),
    differed = tonumber(s.differed), waiting = tonumber(s.waiting), in_flight = tonumber(s.in_flight),
    body_compared = tonumber(s.body_compared), body_differed = tonumber(s.body_differed),
  }
end

function Queue:__tostring() return "turnpike.mirror queue " .. tostring(self.name) end

return mirror
