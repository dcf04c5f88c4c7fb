-- Test plugin: an observing body filter (body_filter_mode = "observe"). It counts the response
-- body's bytes, tries to replace each piece (which an observer may not), and at the last piece
-- logs "watcher: <bytes> bytes, replaced=<what set_body_chunk returned>".
local turnpike = require "turnpike"
local response, log = turnpike.response, turnpike.log

return {
  name = "watcher", version = "1", priority = 300,
  body_filter_mode = "observe",
  schema = { type = "object", additionalProperties = false, properties = {} },
  body_filter = function(conf, ctx)
    local piece = response.get_body_chunk()
    ctx.watched = (ctx.watched or 0) + #piece
    ctx.replaced = response.set_body_chunk("replaced!")
    if response.is_last_chunk() then
      log.warn("watcher: ", ctx.watched, " bytes, replaced=", tostring(ctx.replaced))
    end
  end,
}
