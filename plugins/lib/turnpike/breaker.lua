-- turnpike.breaker: circuit breakers shared by every worker of the node.
--
--   local breaker = require "turnpike.breaker"
--   local b = assert(breaker.get("upstream:payments", { failure_ratio = 0.5, min_requests = 20 }))
--   local ticket = b:allow()            -- nil: refused (open, or half-open with every probe out)
--   ...                                 -- the request runs
--   b:record(ticket, "failure")         -- "success", "failure", or "neither" (told nothing)
--   b:state()                           -- "closed", "open" or "half-open"
--   breaker.list()                      -- every breaker of the node with its counters (metrics)
--
-- One breaker exists per (name, identity, settings) in the whole process: every worker's
-- breaker.get with the same arguments returns the same breaker, and a reload that keeps them keeps
-- its state. The C side is src/lua/breaker.cc (include/turnpike/lua/breaker.h); admission while
-- closed is one atomic load, an outcome a few counter updates under the breaker's own lock.
local ffi = require "ffi"

ffi.cdef [[
typedef struct tp_breaker_settings {
  double window;
  double min_requests;
  double failure_ratio;
  double open_duration;
  double max_open_duration;
  double backoff;
  double half_open_requests;
  double probe_timeout;
} tp_breaker_settings;
typedef struct tp_breaker_stats {
  int32_t state;
  uint32_t epoch;
  uint32_t window_requests;
  uint32_t window_failures;
  uint32_t probes_admitted;
  uint32_t probes_done;
  uint32_t probe_failures;
  uint32_t trips;
  double open_remaining;
  uint64_t admitted_total;
  uint64_t rejected_total;
  uint64_t successes_total;
  uint64_t failures_total;
  uint64_t opened_total;
  uint64_t closed_total;
} tp_breaker_stats;
typedef struct tp_breaker tp_breaker;
tp_breaker* tp_breaker_get(const char* name, size_t name_len, const char* identity, size_t identity_len,
                           const tp_breaker_settings* settings, char* err, size_t err_len);
void tp_breaker_release(tp_breaker* b);
uint32_t tp_breaker_allow(tp_breaker* b);
void tp_breaker_record(tp_breaker* b, uint32_t ticket, int outcome);
void tp_breaker_read(tp_breaker* b, tp_breaker_stats* out);
int32_t tp_breaker_list(void);
int tp_breaker_list_entry(int32_t i, const char** name, size_t* name_len, tp_breaker_stats* out);
]]

local C = ffi.C
local type, tostring, tonumber = type, tostring, tonumber

local errbuf = ffi.new("char[256]")
local stats_out = ffi.new("tp_breaker_stats")
local name_out = ffi.new("const char*[1]")
local len_out = ffi.new("size_t[1]")

local STATES = { [0] = "closed", [1] = "open", [2] = "half-open" }
local OUTCOMES = { neither = 0, success = 1, failure = 2 }

-- The settings and their defaults (seconds for durations).
local DEFAULTS = {
  window = 10, min_requests = 20, failure_ratio = 0.5, open_duration = 5,
  half_open_requests = 1, backoff = 2, probe_timeout = 30,
}

local breaker = { defaults = DEFAULTS }

local Breaker = {}
Breaker.__index = Breaker

local function stats_table(s, name)
  return {
    name = name,
    state = STATES[s.state],
    epoch = tonumber(s.epoch),
    window_requests = tonumber(s.window_requests),
    window_failures = tonumber(s.window_failures),
    probes_admitted = tonumber(s.probes_admitted),
    probes_done = tonumber(s.probes_done),
    probe_failures = tonumber(s.probe_failures),
    trips = tonumber(s.trips),
    open_remaining = tonumber(s.open_remaining),
    admitted = tonumber(s.admitted_total),
    rejected = tonumber(s.rejected_total),
    successes = tonumber(s.successes_total),
    failures = tonumber(s.failures_total),
    opened = tonumber(s.opened_total),
    closed = tonumber(s.closed_total),
  }
end

-- The node's breaker `name` for `settings` (a table of the keys of breaker.defaults, and
-- max_open_duration, which defaults to open_duration: no growth) and `identity` (a string naming
-- the configuration it belongs to; default ""). Returns the breaker, or nil and why the settings
-- are invalid. Call it once per worker and configuration, not per request (it takes a global lock).
function breaker.get(name, settings, identity)
  if type(name) ~= "string" then return nil, "name must be a string" end
  settings = settings or {}
  identity = identity ~= nil and tostring(identity) or ""
  local s = ffi.new("tp_breaker_settings")
  for key, default in pairs(DEFAULTS) do
    local v = settings[key]
    if v == nil then v = default end
    if type(v) ~= "number" then return nil, key .. " must be a number" end
    s[key] = v
  end
  local max = settings.max_open_duration
  if max ~= nil and type(max) ~= "number" then return nil, "max_open_duration must be a number" end
  s.max_open_duration = max or s.open_duration
  local b = C.tp_breaker_get(name, #name, identity, #identity, s, errbuf, 256)
  if b == nil then return nil, ffi.string(errbuf) end
  return setmetatable({ handle = ffi.gc(b, C.tp_breaker_release), name = name }, Breaker)
end

-- A request may go ahead: its ticket, for record; nil when the breaker refuses it.
function Breaker:allow()
  local ticket = C.tp_breaker_allow(self.handle)
  if ticket == 0 then return nil end
  return ticket
end

-- The outcome of the request admitted with `ticket`: "success", "failure" or "neither" (the
-- request told nothing about the upstream, e.g. its client left first; a probe's slot is given
-- back). An outcome of a state that has ended since is ignored.
function Breaker:record(ticket, outcome)
  if not ticket then return end
  local code = OUTCOMES[outcome]
  if not code then error("breaker:record: outcome must be \"success\", \"failure\" or \"neither\"", 2) end
  C.tp_breaker_record(self.handle, ticket, code)
end

function Breaker:state()
  C.tp_breaker_read(self.handle, stats_out)
  return STATES[stats_out.state]
end

-- The breaker's state and counters (the fields of breaker.list's entries).
function Breaker:stats()
  C.tp_breaker_read(self.handle, stats_out)
  return stats_table(stats_out, self.name)
end

-- Every breaker in use on the node, sorted by name: tables with name, state ("closed", "open",
-- "half-open"), trips, window_requests, window_failures, probes_admitted, probes_done,
-- probe_failures, open_remaining (seconds), and the totals since it was made: admitted, rejected,
-- successes, failures, opened, closed.
function breaker.list()
  local out = {}
  local n = C.tp_breaker_list()
  for i = 0, n - 1 do
    if C.tp_breaker_list_entry(i, name_out, len_out, stats_out) == 1 then
      out[#out + 1] = stats_table(stats_out, ffi.string(name_out[0], len_out[0]))
    end
  end
  return out
end

return breaker
