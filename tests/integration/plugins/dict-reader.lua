-- Test plugin: answers 200 with the value of shared dictionary conf.dict's key conf.key (or
-- "nil"), so tests can read what other plugins counted.
local turnpike = require "turnpike"

return {
  name = "dict-reader",
  priority = 1,
  schema = {
    type = "object",
    required = { "dict", "key" },
    properties = { dict = { type = "string" }, key = { type = "string" } },
  },
  access = function(conf)
    local dict = turnpike.shared[conf.dict]
    turnpike.exit(200, tostring(dict and dict:get(conf.key)))
  end,
}
