-- Test plugin: a body filter that waits. Each piece is held for conf.pause seconds
-- (turnpike.sleep) before it is upper-cased, and the count of pieces is reported on the last one.
local turnpike = require "turnpike"
local response = turnpike.response

return {
  name = "slow-shout", version = "1", priority = 390,
  schema = {
    type = "object",
    additionalProperties = false,
    properties = { pause = { type = "number", default = 0.02 } },
  },
  body_filter = function(conf, ctx)
    local before = response.get_body_chunk()
    turnpike.sleep(conf.pause)
    local piece = response.get_body_chunk()
    assert(piece == before, "the piece changed while the filter waited")
    ctx.pieces = (ctx.pieces or 0) + 1
    if response.is_last_chunk() then
      response.set_body_chunk(piece:upper() .. "-- " .. ctx.pieces .. " pieces\n")
    else
      response.set_body_chunk(piece:upper())
    end
  end,
}
