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

-- Ends the phase: the gateway answers the client with `status` and `body`; later plugins of the
-- request's chain do not run (log still does).
function turnpike.exit(status, body)
  status = tonumber(status)
  if not status or status < 100 or status > 599 or status % 1 ~= 0 then
    error("turnpike.exit: status must be an integer from 100 to 599", 2)
  end
  yield(yield_tag, "exit", status, body ~= nil and tostring(body) or nil)
end

-- Request -------------------------------------------------------------------------------------

local request = turnpike.request

function request.get_header(name)
  local api = current.request_api
  if api.get_header == nil then return nil end
  return to_string(api.get_header(current.request, name, #name, len_out))
end

-- Replaces header `name`; a nil value removes it. Returns true, or false when refused.
function request.set_header(name, value)
  local api = current.request_api
  if api.set_header == nil then return false end
  if value == nil then return api.set_header(current.request, name, #name, nil, 0) == 0 end
  value = tostring(value)
  return api.set_header(current.request, name, #name, value, #value) == 0
end

local function string_getter(field)
  return function()
    local fn = current.request_api[field]
    if fn == nil then return nil end
    return to_string(fn(current.request, len_out))
  end
end

request.get_method = string_getter("method")
request.get_path = string_getter("path")
request.get_client_ip = string_getter("client_ip")

return turnpike
