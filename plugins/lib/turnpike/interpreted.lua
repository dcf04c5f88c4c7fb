-- The PDK as user plugins see it (`require "turnpike"` in a module from plugin_paths): the same
-- functions as plugins/lib/turnpike.lua, with the request functions bound as lua_CFunctions,
-- which interpreted code calls ten times faster than FFI ones (docs/plugins.md, "PDK transport").
local turnpike = require "turnpike"
local bridge = require("turnpike.runtime").bridge

local interpreted = {}
for k, v in pairs(turnpike) do interpreted[k] = v end
interpreted.request = bridge.classic_request

return interpreted
