-- Test plugin: fetches conf.url with turnpike.http.request in access and answers with what came
-- back (status and error in headers, the body as the body), so tests see the HTTP client's view.
local turnpike = require "turnpike"

return {
  name = "fetcher",
  version = "1.0",
  priority = 10,
  schema = {
    type = "object",
    properties = { url = { type = "string" }, ssl_verify = { type = "boolean", default = true } },
    required = { "url" },
    additionalProperties = false,
  },
  access = function(conf)
    local res, err = turnpike.http.request{ url = conf.url, ssl_verify = conf.ssl_verify, timeout = 3 }
    return turnpike.exit(200, res and res.body or "", {
      ["x-fetch-status"] = tostring(res and res.status or 0),
      ["x-fetch-error"] = err or "",
    })
  end,
}
