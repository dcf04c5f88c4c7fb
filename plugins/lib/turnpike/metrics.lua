-- turnpike.metrics: counters, gauges and histograms a plugin defines, exported on the admin
-- listener's /metrics as turnpike_plugin_<name>.
--
--   local metrics = require "turnpike.metrics"
--   local denied = metrics.counter("acme_denied_total", "Requests acme denied.", { "route", "reason" })
--   local queue = metrics.gauge("acme_queue_length", "Items waiting in acme's queue.")
--   local took = metrics.histogram("acme_check_seconds", "Time acme's check took.", { "route" },
--                                  { 0.005, 0.01, 0.05, 0.1, 0.5, 1 })
--   denied:inc(1, { route, "expired" })   -- label values in the order of the definition
--   queue:set(n)                           -- a gauge without labels
--   took:observe(0.012, { route })
--
-- Define metrics when the module loads (at its top level): a definition takes a lock and is
-- remembered across reloads (the same definition again returns the same metric; another kind,
-- other labels or other buckets under the same name is an error). Recording is per worker and
-- takes no lock: each metric object caches the series of the label sets this worker has seen,
-- so only the first use of a label set calls into the registry. Gauges are summed over the
-- workers: each worker's set() is its share. A metric keeps at most `max_series` label sets
-- (default 1000; metrics.counter(name, help, labels, { max_series = n })); later ones share one
-- series whose labels read "(overflow)". The C side is src/lua/plugin_metrics.cc.
local ffi = require "ffi"

ffi.cdef [[
int tp_metrics_define(const char* name, size_t name_len, int kind, const char* help, size_t help_len,
                      const char* labels, size_t labels_len, int label_count, const double* bounds,
                      int bound_count, int max_series, char* err, size_t err_len);
int64_t tp_metrics_series(int metric, const char* values, size_t len);
void tp_metrics_add(int64_t slot, double v);
void tp_metrics_set(int64_t slot, double v);
void tp_metrics_observe(int64_t slot, const double* bounds, int bound_count, double v);
]]

local C = ffi.C
local concat, type, tostring, error, select = table.concat, type, tostring, error, select

local KIND = { counter = 0, gauge = 1, histogram = 2 }
local DEFAULT_MAX_SERIES = 1000
local errbuf = ffi.new("char[256]")

local Metric = {}
Metric.__index = Metric

-- The slot of a label set: from this worker's cache, else from the registry (once).
local function slot_of(self, labels)
  local key
  if self.nlabels == 0 then
    key = ""
  elseif type(labels) ~= "table" then
    if self.nlabels ~= 1 then error("metric " .. self.name .. ": expected " .. self.nlabels .. " label values", 3) end
    key = tostring(labels)
  else
    key = concat(labels, "\0", 1, self.nlabels)
  end
  local slot = self.slots[key]
  if slot then return slot end
  local joined = self.nlabels == 0 and "" or key .. "\0"
  slot = C.tp_metrics_series(self.id, joined, #joined)
  if slot <= -2 then return -2 - slot end  -- the overflow series: not cached
  self.slots[key] = slot
  return slot
end

function Metric:inc(v, labels)
  v = v or 1
  if self.kind == "counter" and v < 0 then error("metric " .. self.name .. ": a counter only goes up", 2) end
  if self.kind == "histogram" then error("metric " .. self.name .. ": use observe on a histogram", 2) end
  C.tp_metrics_add(slot_of(self, labels), v)
end

function Metric:dec(v, labels)
  if self.kind ~= "gauge" then error("metric " .. self.name .. ": only a gauge goes down", 2) end
  C.tp_metrics_add(slot_of(self, labels), -(v or 1))
end

function Metric:set(v, labels)
  if self.kind ~= "gauge" then error("metric " .. self.name .. ": only a gauge is set", 2) end
  C.tp_metrics_set(slot_of(self, labels), v)
end

function Metric:observe(v, labels)
  if self.kind ~= "histogram" then error("metric " .. self.name .. ": observe is for histograms", 2) end
  C.tp_metrics_observe(slot_of(self, labels), self.bounds, self.nbounds, v)
end

local function define(kind, name, help, labels, buckets, opts)
  if type(name) ~= "string" then error("metric name must be a string", 3) end
  help = help or ""
  labels = labels or {}
  local joined = #labels > 0 and concat(labels, "\0") .. "\0" or ""
  local nb = buckets and #buckets or 0
  local bounds = ffi.new("double[?]", nb > 0 and nb or 1)
  for i = 1, nb do bounds[i - 1] = buckets[i] end
  local max_series = opts and opts.max_series or DEFAULT_MAX_SERIES
  local id = C.tp_metrics_define(name, #name, KIND[kind], help, #help, joined, #joined, #labels, bounds, nb,
                                 max_series, errbuf, 256)
  if id < 0 then error("turnpike.metrics: " .. name .. ": " .. ffi.string(errbuf), 3) end
  return setmetatable({ id = id, name = name, kind = kind, nlabels = #labels, bounds = bounds, nbounds = nb,
                        slots = {} }, Metric)
end

local metrics = {}

function metrics.counter(name, help, labels, opts) return define("counter", name, help, labels, nil, opts) end
function metrics.gauge(name, help, labels, opts) return define("gauge", name, help, labels, nil, opts) end
function metrics.histogram(name, help, labels, buckets, opts)
  if type(buckets) ~= "table" or #buckets == 0 then error("metric " .. tostring(name) .. ": a histogram needs buckets", 2) end
  return define("histogram", name, help, labels, buckets, opts)
end

return metrics
