-- Test plugin: defines a metric twice with different kinds (a load error).
local metrics = require "turnpike.metrics"
metrics.counter("bad_metric_total", "first")
metrics.gauge("bad_metric_total", "second")
return {
  name = "bad-metric", version = "1", priority = 900,
  schema = { type = "object", properties = {} },
  access = function() end,
}
