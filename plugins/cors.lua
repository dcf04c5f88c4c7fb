-- cors: Cross-Origin Resource Sharing (the Fetch standard's CORS protocol). Preflight requests
-- are answered here, without the upstream; other requests from an allowed origin get the CORS
-- response headers added.
--
--   routes:
--     - name: api
--       plugins:
--         cors:
--           allow_origins: ["https://app.example.com", "https://admin.example.com"]
--           allow_methods: [GET, POST, PUT]
--           allow_headers: [Authorization, Content-Type]
--           expose_headers: [X-Request-Id]
--           allow_credentials: true
--           max_age: 3600
--
-- allow_origins, allow_methods and allow_headers are lists, or "*" for any. The Fetch standard
-- ignores "*" on a credentialed request, so with allow_credentials the origin must be listed
-- (checked when the config loads) and a "*" for methods or headers is answered with the ones the
-- preflight asked for. An origin that is not allowed gets no CORS headers, and its preflight a 403.
local turnpike = require "turnpike"
local json = require "turnpike.json"

local request, response = turnpike.request, turnpike.response
local concat, type, format = table.concat, type, string.format

local JSON = { ["content-type"] = "application/json" }
local FORBIDDEN = json.encode({ error = "forbidden", message = "this origin may not make cross-origin requests" })

-- "*" → { any = true }; a list → its entries as a set, and as one header value (`text`).
local function prepare(value)
  if value == "*" then return { any = true } end
  local set = { text = concat(value, ", ") }
  for _, v in ipairs(value) do set[v] = true end
  return set
end

-- conf → what every request needs, prepared once (weak keys).
local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = compiled[conf]
  if c then return c end
  c = {
    origins = prepare(conf.allow_origins),
    methods = prepare(conf.allow_methods),
    headers = prepare(conf.allow_headers),
    expose = conf.expose_headers and concat(conf.expose_headers, ", ") or nil,
    max_age = tostring(conf.max_age),
  }
  compiled[conf] = c
  return c
end

-- The Access-Control-Allow-Origin value for `origin`, or nil when it is not allowed.
local function allowed_origin(c, conf, origin)
  if c.origins[origin] then return origin end
  if c.origins.any then return conf.allow_credentials and nil or "*" end
  return nil
end

-- A "*" for methods or headers is a wildcard only without credentials (Fetch standard, "CORS
-- protocol and credentials"): with them, echo what the preflight asked for.
local function wildcard(set, conf, asked)
  if not set.any then return set.text end
  if conf.allow_credentials then return asked end
  return "*"
end

local function preflight(conf, ctx, origin)
  local c = compile(conf)
  local allow = allowed_origin(c, conf, origin)
  ctx.cors_preflight = true
  if not allow then return turnpike.exit(403, FORBIDDEN, JSON) end
  local headers = {
    ["Access-Control-Allow-Origin"] = allow,
    ["Access-Control-Allow-Methods"] = wildcard(c.methods, conf,
                                                request.get_header("access-control-request-method")),
    ["Access-Control-Max-Age"] = c.max_age,
  }
  local asked = request.get_header("access-control-request-headers")
  local allow_headers = wildcard(c.headers, conf, asked)
  if allow_headers and allow_headers ~= "" then headers["Access-Control-Allow-Headers"] = allow_headers end
  if conf.allow_credentials then headers["Access-Control-Allow-Credentials"] = "true" end
  -- The answer depends on these request fields; caches must keep them apart (Fetch standard,
  -- "CORS protocol and HTTP caches").
  if allow ~= "*" then headers["Vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers" end
  return turnpike.exit(204, nil, headers)
end

local origin_list = {
  description = '"*" or a list of origins (scheme://host[:port])',
  default = "*",
}
local token_list = { description = '"*" or a list', default = "*" }

-- `value` is "*" or a non-empty list of strings matching `pattern`: nil, or the error.
local function check_list(conf, field, pattern, what)
  local value = conf[field]
  if value == "*" then return nil end
  if type(value) ~= "table" or #value == 0 then
    return format('conf.%s: expected "*" or a non-empty list of %s', field, what)
  end
  for i, v in ipairs(value) do
    if type(v) ~= "string" or not v:match(pattern) then
      return format("conf.%s[%d]: expected %s, got %s", field, i, what, json.encode(v))
    end
  end
  return nil
end

return {
  name = "cors",
  version = "1.0",
  priority = 4000,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      allow_origins = origin_list,
      allow_methods = token_list,
      allow_headers = token_list,
      expose_headers = { type = "array", items = { type = "string", pattern = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" } },
      max_age = { type = "integer", minimum = 0, maximum = 86400, default = 5 },
      allow_credentials = { type = "boolean", default = false },
    },
  },

  check_schema = function(conf)
    local err = check_list(conf, "allow_origins", "^https?://[%w.:%[%]-]+$", "an origin (scheme://host[:port])")
      or check_list(conf, "allow_methods", "^[%w!#$%%&'*+.^_`|~-]+$", "a method")
      or check_list(conf, "allow_headers", "^[%w!#$%%&'*+.^_`|~-]+$", "a header name")
    if err then return false, err end
    if conf.allow_credentials and conf.allow_origins == "*" then
      -- Any site could then read responses made with the user's cookies.
      return false, 'conf.allow_origins: "*" cannot be used with allow_credentials: list the origins'
    end
    return true
  end,

  -- Preflights are answered before authentication: browsers send them without credentials.
  rewrite = function(conf, ctx)
    local origin = request.get_header("origin")
    if origin and request.get_method() == "OPTIONS" and request.get_header("access-control-request-method") then
      return preflight(conf, ctx, origin)
    end
  end,

  header_filter = function(conf, ctx)
    if ctx.cors_preflight then return end
    local c = compile(conf)
    -- With a list of origins, the response depends on Origin whether or not this request had
    -- one: a cache must not give one origin's answer to another ("CORS protocol and HTTP caches").
    if not c.origins.any then response.add_header("Vary", "Origin") end
    local origin = request.get_header("origin")
    local allow = origin and allowed_origin(c, conf, origin)
    if not allow then return end
    response.set_header("Access-Control-Allow-Origin", allow)
    if conf.allow_credentials then response.set_header("Access-Control-Allow-Credentials", "true") end
    if c.expose then response.set_header("Access-Control-Expose-Headers", c.expose) end
  end,
}
