-- Test plugin with a higher priority than tracer: adds its mark first.
return {
  name = "early", version = "1", priority = 5000,
  schema = { type = "object", properties = {} },
  access = function(conf, ctx)
    ctx.trace = (ctx.trace or "") .. "early,"
  end,
}
