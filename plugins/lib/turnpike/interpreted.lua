-- The PDK as user plugins see it (`require "turnpike"` in a module from plugin_paths): the same
-- functions as plugins/lib/turnpike.lua, with the request and shared-dictionary functions bound
-- as lua_CFunctions,
-- which interpreted code calls ten times faster than FFI ones (docs/plugins.md, "PDK transport").
local turnpike = require "turnpike"
local bridge = require("turnpike.runtime").bridge

local interpreted = {}
for k, v in pairs(turnpike) do interpreted[k] = v end
interpreted.request = bridge.classic_request
interpreted.response = nil  -- api() below makes this transport's own
local classic = bridge.classic_request
require("turnpike.api")(interpreted, classic._get, classic._set, classic._get_int, classic._log)

local open = bridge.classic_shared_open
interpreted.shared = setmetatable({}, {
  __index = function(dicts, name)
    local dict = open(name)
    if dict then rawset(dicts, name, dict) end  -- opened once per worker
    return dict
  end,
})

return interpreted
