-- Test plugin: tells the upstream what the authentication plugins left in ctx for the plugins
-- after them (x-whoami: ctx.consumer's username; x-whoami-sub: ctx.jwt_claims.sub).
local turnpike = require "turnpike"
return {
  name = "whoami", version = "1", priority = 100,
  schema = { type = "object", additionalProperties = false, properties = {} },
  access = function(conf, ctx)
    turnpike.request.set_header("x-whoami", ctx.consumer and ctx.consumer.username or "nobody")
    if ctx.jwt_claims then turnpike.request.set_header("x-whoami-sub", tostring(ctx.jwt_claims.sub)) end
  end,
}
