-- Test plugin: answers with what the PDK reports about the request, as JSON-ish text.
local turnpike = require "turnpike"
return {
  name = "pdk-probe", version = "1", priority = 100,
  schema = { type = "object", properties = {} },
  access = function(conf, ctx)
    local r = turnpike.request
    local args = r.get_uri_args()
    local parts = {
      "method=" .. tostring(r.get_method()),
      "path=" .. tostring(r.get_path()),
      "host=" .. tostring(r.get_host()),
      "scheme=" .. tostring(r.get_scheme()),
      "query=" .. tostring(r.get_query()),
      "arg_a=" .. tostring(args.a),
      "route=" .. tostring(r.get_route()),
      "param_id=" .. tostring(r.get_param("id")),
      "client=" .. tostring(r.get_client_ip()),
      "ua=" .. tostring(r.get_header("User-Agent")),
    }
    if args.rewrite then
      r.set_path("/echo/rewritten")
      r.set_uri_args({ added = "1" })
      r.set_header("x-probe", "yes")
      return
    end
    return turnpike.exit(200, table.concat(parts, "\n") .. "\n")
  end,
}
