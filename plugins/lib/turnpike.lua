-- The plugin API (PDK): `local turnpike = require "turnpike"` in a plugin.
--
-- Per-request calls go through LuaJIT's FFI to the C functions of include/turnpike/lua/pdk.h;
-- the request they act on is the one whose call is running (the runtime sets it before every
-- resumption), so plugins pass no handle.
local ffi = require "ffi"
require "turnpike.cdefs"

local bridge = require("turnpike.runtime").bridge
local current = ffi.cast("tp_pdk_current*", bridge.current)
local yield_tag = bridge.yield_tag
local yield = coroutine.yield

local len_out = ffi.new("size_t[1]")

local turnpike = { request = {} }

-- A (pointer, length) result as a Lua string, nil for NULL.
local function to_string(ptr)
  if ptr == nil then return nil end
  return ffi.string(ptr, len_out[0])
end

-- Flow ----------------------------------------------------------------------------------------

-- Suspends this request's plugin code for `seconds`; the worker serves other requests meanwhile.
function turnpike.sleep(seconds)
  yield(yield_tag, "sleep", tonumber(seconds) or 0)
end

-- Ends the phase: the gateway answers the client with `status`, `body` and `headers`
-- ({ ["content-type"] = "application/json" }); later plugins of the request's chain do not run
-- (log still does).
function turnpike.exit(status, body, headers)
  status = tonumber(status)
  if not status or status < 100 or status > 599 or status % 1 ~= 0 then
    error("turnpike.exit: status must be an integer from 100 to 599", 2)
  end
  if headers ~= nil then
    if type(headers) ~= "table" then error("turnpike.exit: headers must be a table", 2) end
    for name, value in pairs(headers) do
      if type(name) ~= "string" or (type(value) ~= "string" and type(value) ~= "number") then
        error("turnpike.exit: headers must map names to strings", 2)
      end
    end
  end
  yield(yield_tag, "exit", status, body ~= nil and tostring(body) or nil, headers)
end

-- HTTP client ---------------------------------------------------------------------------------
-- turnpike.http.request{ method =, url =, headers =, body =, timeout =, max_body =, ssl_verify = }
-- (url http:// or https://; ssl_verify defaults to true: the system CA store and the host name) returns
-- { status =, headers = { lower-case name = value }, body = }, or nil and why ("timeout",
-- "connect failed: ...", "bad response: ...", "body too large"). The call waits without
-- blocking the worker (src/lua/http_client.cc); connections are kept alive per worker.

local function check_http(req)
  if type(req) ~= "table" then error("turnpike.http.request: expected a table", 3) end
  if type(req.url) ~= "string" then error("turnpike.http.request: url must be a string", 3) end
  if req.ssl_verify ~= nil and type(req.ssl_verify) ~= "boolean" then
    error("turnpike.http.request: ssl_verify must be a boolean", 3)
  end
  if req.method ~= nil and type(req.method) ~= "string" then
    error("turnpike.http.request: method must be a string", 3)
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    error("turnpike.http.request: body must be a string", 3)
  end
  if req.timeout ~= nil and (type(req.timeout) ~= "number" or req.timeout <= 0) then
    error("turnpike.http.request: timeout must be a number of seconds > 0", 3)
  end
  if req.max_body ~= nil and (type(req.max_body) ~= "number" or req.max_body < 0) then
    error("turnpike.http.request: max_body must be a number >= 0", 3)
  end
  -- The fields as a flat list of strings, which C++ reads without calling into Lua.
  local flat = {}
  if req.headers ~= nil then
    if type(req.headers) ~= "table" then error("turnpike.http.request: headers must be a table", 3) end
    for name, value in pairs(req.headers) do
      if type(name) ~= "string" or (type(value) ~= "string" and type(value) ~= "number") then
        error("turnpike.http.request: headers must map names to strings", 3)
      end
      flat[#flat + 1] = name
      flat[#flat + 1] = tostring(value)
    end
  end
  return flat
end

turnpike.http = {}

function turnpike.http.request(req)
  local flat = check_http(req)
  local res, err, raise = yield(yield_tag, "http", req.method or "GET", req.url, flat, req.body,
                                req.timeout, req.max_body, req.ssl_verify)
  if raise then error(err, 2) end
  return res, err
end

-- Timers --------------------------------------------------------------------------------------
-- turnpike.timer.at(delay, fn, ...) runs fn(premature, ...) once, `delay` seconds from now;
-- turnpike.timer.every(interval, fn, ...) runs it every `interval` seconds (a run never overlaps
-- the previous one: the next interval starts when a run ends). Both return a handle with
-- :cancel(), or nil and why. Callbacks run on this worker, outside any request, with the same
-- budgets as a phase, and may sleep or use turnpike.http. When the plugin generation that made a
-- timer is retired (a reload) or the worker stops, a pending timer runs once more at once with
-- premature = true, and then ends (src/lua/timer.cc).

local timer_start, timer_cancel, timer_counts = bridge.timer_start, bridge.timer_cancel, bridge.timer_counts
local timer_handle = {}
timer_handle.__index = timer_handle

-- Stops the timer: true if it was pending (a run in progress finishes; a periodic timer does not
-- run again).
function timer_handle:cancel()
  return timer_cancel(self.id)
end

local function start_timer(what, seconds, periodic, fn, ...)
  seconds = tonumber(seconds)
  if not seconds then error("turnpike.timer." .. what .. ": expected a number of seconds", 3) end
  if type(fn) ~= "function" then error("turnpike.timer." .. what .. ": expected a function", 3) end
  local id, err = timer_start(seconds, periodic, fn, ...)
  if not id then return nil, err end
  return setmetatable({ id = id }, timer_handle)
end

turnpike.timer = {}

function turnpike.timer.at(delay, fn, ...)
  return start_timer("at", delay, false, fn, ...)
end

function turnpike.timer.every(interval, fn, ...)
  return start_timer("every", interval, true, fn, ...)
end

-- Timers of this worker: pending (armed or running), and running now.
function turnpike.timer.counts()
  return timer_counts()
end

-- Request -------------------------------------------------------------------------------------

local request = turnpike.request

-- Outside a request (init_worker, a timer) there is no request: every function answers nil.
function request.get_header(name)
  local api = current.request_api
  if api.get_header == nil or current.request == nil then return nil end
  return to_string(api.get_header(current.request, name, #name, len_out))
end

-- Replaces header `name`; a nil value removes it. Returns true, or false when refused.
function request.set_header(name, value)
  local api = current.request_api
  if api.set_header == nil or current.request == nil then return false end
  if value == nil then return api.set_header(current.request, name, #name, nil, 0) == 0 end
  value = tostring(value)
  return api.set_header(current.request, name, #name, value, #value) == 0
end

local function string_getter(field)
  return function()
    local fn = current.request_api[field]
    if fn == nil or current.request == nil then return nil end
    return to_string(fn(current.request, len_out))
  end
end

request.get_method = string_getter("method")
request.get_path = string_getter("path")
request.get_client_ip = string_getter("client_ip")

-- The rest of the request, response, upstream, log and consumer functions (turnpike/api.lua),
-- over these four FFI primitives.
local function get(field, arg)
  local fn = current.request_api.get
  if fn == nil or current.request == nil then return nil end
  arg = arg or ""
  return to_string(fn(current.request, field, arg, #arg, len_out))
end

local function set(field, arg, value)
  local fn = current.request_api.set
  if fn == nil or current.request == nil then return false end
  arg = arg or ""
  if value == nil then return fn(current.request, field, arg, #arg, nil, 0) == 0 end
  return fn(current.request, field, arg, #arg, value, #value) == 0
end

local function get_int(field)
  local fn = current.request_api.get_int
  if fn == nil or current.request == nil then return nil end
  local v = fn(current.request, field)
  if v < 0 then return nil end
  return tonumber(v)
end

local function log(level, message)
  local fn = current.request_api.log
  if fn ~= nil then fn(current.request, level, message, #message) end
end

require("turnpike.api")(turnpike, get, set, get_int, log)

-- Shared dictionaries -------------------------------------------------------------------------
-- turnpike.shared.<name> is the node-wide dictionary of that name (nil when none is configured),
-- with the methods below; every worker of the node sees the same data.

local shared_api = current.shared_api
local value_io = ffi.new("tp_shared_value")
local number_out = ffi.new("double[1]")

local Dict = {}
Dict.__index = Dict

-- Fills value_io from a Lua value; false for a type a dictionary cannot hold.
local function encode(value)
  local t = type(value)
  if t == "number" then
    value_io.type, value_io.number = 1, value
  elseif t == "string" then
    value_io.type, value_io.str, value_io.len = 2, value, #value
  elseif t == "boolean" then
    value_io.type, value_io.number = 3, value and 1 or 0
  else
    return false
  end
  return true
end

-- The value of `key`, or nil when absent or expired.
function Dict:get(key)
  shared_api.get(self.handle, key, #key, value_io)
  local t = value_io.type
  if t == 1 then return tonumber(value_io.number) end
  if t == 2 then return ffi.string(value_io.str, value_io.len) end
  if t == 3 then return value_io.number ~= 0 end
  return nil
end

local STORE_ERRORS = { [1] = "exists", [-1] = "value too large" }

local function store(fn, self, key, value, ttl)
  if not encode(value) then return nil, "cannot store a " .. type(value) end
  local rc = fn(self.handle, key, #key, value_io, ttl or 0)
  value_io.str = nil  -- do not keep a pointer into a Lua string past this call
  if rc == 0 then return true end
  return false, STORE_ERRORS[rc]
end

-- Stores `value` (number, string or boolean) for `ttl` seconds (nil or 0: no expiry), evicting
-- least recently used entries if needed. true, or false and why.
function Dict:set(key, value, ttl) return store(shared_api.set, self, key, value, ttl) end

-- As set, but only when the key has no live value: false, "exists" otherwise.
function Dict:add(key, value, ttl) return store(shared_api.add, self, key, value, ttl) end

-- Adds `delta` atomically across all workers and returns the new value. A missing key starts at
-- `init` (with `ttl`) when init is given; otherwise nil, "not found". nil, "not a number" when
-- the value is not a number.
function Dict:incr(key, delta, init, ttl)
  local rc = shared_api.incr(self.handle, key, #key, delta or 1, init or 0, init and 1 or 0,
                             ttl or 0, number_out)
  if rc == 0 then return tonumber(number_out[0]) end
  return nil, rc == -3 and "not a number" or "not found"
end

function Dict:delete(key) shared_api.del(self.handle, key, #key) end

turnpike.shared = setmetatable({}, {
  __index = function(dicts, name)
    local handle = shared_api.find(current.shared, name, #name)
    if handle == nil then return nil end
    local dict = setmetatable({ handle = handle }, Dict)
    rawset(dicts, name, dict)  -- found once per worker
    return dict
  end,
})

return turnpike
