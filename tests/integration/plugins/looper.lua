-- Test plugin: loops forever in access (cut off by the instruction budget).
return {
  name = "looper", version = "1", priority = 900,
  schema = { type = "object", properties = {} },
  access = function(conf, ctx)
    local n = 0
    while true do n = n + 1 end
  end,
}
