-- Test plugin: records the phases it ran in the shared ctx, and reports them to the client in a
-- response header, with its configured label (ordering, merging and ctx sharing are visible).
local turnpike = require "turnpike"
return {
  name = "tracer", version = "1", priority = 500,
  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      label = { type = "string", default = "t" },
      deny = { type = "boolean", default = false },
      pause = { type = "number", default = 0 },
    },
  },
  rewrite = function(conf, ctx)
    ctx.trace = (ctx.trace or "") .. conf.label .. ":rewrite,"
  end,
  access = function(conf, ctx)
    if conf.pause > 0 then turnpike.sleep(conf.pause) end
    ctx.trace = (ctx.trace or "") .. conf.label .. ":access,"
    ctx.runs = (ctx.runs or 0) + 1
    if conf.deny then
      return turnpike.exit(403, '{"denied":"' .. conf.label .. '"}', { ["content-type"] = "application/json" })
    end
    turnpike.request.set_header("x-trace", ctx.trace)
  end,
  header_filter = function(conf, ctx)
    turnpike.response.set_header("x-trace", (ctx.trace or "") .. conf.label .. ":header")
    turnpike.response.set_header("x-access-runs", ctx.runs or 0)
  end,
}
