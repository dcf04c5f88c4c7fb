-- Test plugin: allocates without end in access (stopped by the VM memory cap).
return {
  name = "hog", version = "1", priority = 900,
  schema = { type = "object", properties = {} },
  access = function(conf, ctx)
    local t = {}
    local i = 0
    while true do
      i = i + 1
      t[i] = string.rep("x", 1024) .. i
    end
  end,
}
