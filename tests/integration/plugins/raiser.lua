-- Test plugin: raises in access when the request has X-Raise (a buggy plugin).
local turnpike = require "turnpike"
return {
  name = "raiser", version = "1", priority = 900,
  schema = { type = "object", properties = {} },
  access = function(conf, ctx)
    if turnpike.request.get_header("x-raise") then error("raised on purpose") end
  end,
}
