-- Test plugin: a body filter that changes the body. mode "stream" upper-cases each piece as it
-- passes; "whole" keeps the pieces in ctx and answers one upper-cased body with a trailer line at
-- the end; "raise" fails on the first piece.
local turnpike = require "turnpike"
local response = turnpike.response

return {
  name = "shout", version = "1", priority = 400,
  schema = {
    type = "object",
    additionalProperties = false,
    properties = { mode = { type = "string", enum = { "stream", "whole", "raise" }, default = "stream" } },
  },
  body_filter = function(conf, ctx)
    local piece = response.get_body_chunk()
    if conf.mode == "raise" then error("body filter broke") end
    if conf.mode == "stream" then
      response.set_body_chunk(piece:upper())
      return
    end
    ctx.kept = (ctx.kept or "") .. piece
    if response.is_last_chunk() then
      response.set_body_chunk(ctx.kept:upper() .. "\n-- shouted\n")
    else
      response.set_body_chunk("")
    end
  end,
}
