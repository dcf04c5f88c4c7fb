-- Test plugin: waits far longer than any request may take (bounded by the request timeouts).
local turnpike = require "turnpike"
return {
  name = "sleeper", version = "1", priority = 900,
  schema = { type = "object", properties = { seconds = { type = "number", default = 3600 } } },
  access = function(conf, ctx)
    turnpike.sleep(conf.seconds)
  end,
}
