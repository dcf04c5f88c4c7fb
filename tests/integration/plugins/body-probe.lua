-- Test plugin: reads the request body ahead in access (read_body with conf.max) and tells the
-- upstream what it saw (x-body-len, x-body-whole, x-body-sha256 of what it read); with
-- conf.replace, replaces the body (conf.replace with "<len>" replaced by the length read);
-- with conf.deny_over, answers 413 itself when the body is longer.
local turnpike = require "turnpike"
local crypto = require "turnpike.crypto"
return {
  name = "body-probe", version = "1", priority = 100,
  schema = {
    type = "object", additionalProperties = false,
    properties = {
      max = { type = "integer", minimum = 0 },
      replace = { type = "string" },
      deny_over = { type = "integer", minimum = 0 },
      phase = { type = "string", enum = { "access", "rewrite" }, default = "access" },
    },
  },
  access = function(conf, ctx)
    local body, whole = turnpike.request.read_body(conf.max)
    if body == nil then
      turnpike.request.set_header("x-body-error", whole or "error")
      return
    end
    if conf.deny_over and (not whole or #body > conf.deny_over) then
      return turnpike.exit(413, '{"error":"too_large"}')
    end
    turnpike.request.set_header("x-body-len", tostring(#body))
    turnpike.request.set_header("x-body-whole", tostring(whole))
    turnpike.request.set_header("x-body-sha256", crypto.hex(crypto.sha256(body)))
    turnpike.request.set_header("x-get-body-same", tostring(turnpike.request.get_body() == body))
    if conf.replace then
      local ok = turnpike.request.set_body((conf.replace:gsub("<len>", tostring(#body))))
      turnpike.request.set_header("x-replaced", tostring(ok))
    end
  end,
}
