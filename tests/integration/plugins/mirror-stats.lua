-- Test plugin: answers 200 with the counters of this worker's mirror queue conf.queue as JSON
-- (null when the worker has no such queue), so tests can read what turnpike.mirror counted.
local turnpike = require "turnpike"
local mirror = require "turnpike.mirror"
local json = require "turnpike.json"

return {
  name = "mirror-stats",
  priority = 1,
  schema = {
    type = "object",
    required = { "queue" },
    properties = { queue = { type = "string" } },
  },
  access = function(conf)
    local q = mirror.find(conf.queue)
    turnpike.exit(200, q and json.encode(q:stats()) or "null", { ["content-type"] = "application/json" })
  end,
}
