-- proxy-rewrite: changes what the upstream gets: the path (a template with the route's {param}
-- values, or a regular expression's captures), the Host, and header fields.
--
--   routes:
--     - name: users
--       match: { paths: ["/api/v1/users/{id}"] }
--       plugins:
--         proxy-rewrite:
--           uri: "/internal/users/{id}"            # or: regex_uri: ["^/api/v1/(.*)", "/$1"]
--           host: users.internal
--           headers:
--             set: { X-Api-Version: "1" }
--             add: { Forwarded-Prefix: "/api/v1" }
--             remove: [Cookie]
--
-- A "?query" in the new URI is sent before the request's own query arguments, which are kept.
-- regex_uri matches the normalized path; a path it does not match is sent unchanged. Header
-- operations run in the order add, set, remove; `add` appends to a field the request already
-- has (as one comma-separated field, RFC 9110 §5.3). `method` changes the method the upstream
-- gets; a HEAD or CONNECT request, and a WebSocket upgrade, keep theirs (the response's framing
-- depends on it), which is logged.
local turnpike = require "turnpike"
local json = require "turnpike.json"
local regex = require "turnpike.regex"
local template = require "turnpike.template"

local request = turnpike.request
local concat, find, sub, format, type = table.concat, string.find, string.sub, string.format, type

local JSON = { ["content-type"] = "application/json" }
local FAILED = json.encode({ error = "rewrite_failed", message = "the rewritten path is not a valid path" })

-- Fields the gateway owns (framing, connection management, RFC 9110 §7.6.1): a plugin may not
-- set them. Host has its own option.
local MANAGED = { connection = true, ["keep-alive"] = true, ["proxy-connection"] = true,
                  ["transfer-encoding"] = true, te = true, trailer = true, upgrade = true,
                  ["content-length"] = true, host = true }

local parse_template, expand, substitute = template.parse, template.expand, template.substitute

-- ---- Compiled conf ----------------------------------------------------------------------------

local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = compiled[conf]
  if c then return c end
  c = {}
  if conf.uri then c.uri = parse_template(conf.uri) end
  if conf.regex_uri then c.regex = assert(regex.compile(conf.regex_uri[1])) end
  compiled[conf] = c
  return c
end

-- Sends `uri` (path and maybe "?query") upstream; false when the gateway refuses the path.
local function send_uri(uri)
  local q = find(uri, "?", 1, true)
  if not q then return request.set_path(uri) end
  local query, own = sub(uri, q + 1), request.get_query()
  if own and own ~= "" then query = query == "" and own or (query .. "&" .. own) end
  return request.set_path(sub(uri, 1, q - 1)) and request.set_uri_args(query)
end

-- Every value of request field `name`, joined as one list (RFC 9110 §5.3), or nil.
local function current_values(name)
  local values = {}
  local lower = name:lower()
  for _, field in ipairs(request.get_headers()) do
    if field[1]:lower() == lower then values[#values + 1] = field[2] end
  end
  if #values == 0 then return nil end
  return concat(values, ", ")
end

local function rewrite_headers(ops)
  for name, value in pairs(ops.add or {}) do
    local have = current_values(name)
    request.set_header(name, have and (have .. ", " .. value) or value)
  end
  for name, value in pairs(ops.set or {}) do request.set_header(name, value) end
  for _, name in ipairs(ops.remove or {}) do request.set_header(name, nil) end
end

-- ---- Schema -----------------------------------------------------------------------------------

-- A field name (RFC 9110 §5.6.2 token): for the schema (PCRE2) and for Lua code.
local TOKEN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
local TOKEN_LUA = "^[%w!#$%%&'*+.^_`|~-]+$"

-- A map of field names to values: nil, or the first error.
local function check_field_map(map, at)
  for name, value in pairs(map) do
    if type(name) ~= "string" or not name:match(TOKEN_LUA) then
      return format("%s: %s is not a field name", at, json.encode(name))
    end
    if MANAGED[name:lower()] then
      return format("%s.%s: the gateway manages this field%s", at, name,
                    name:lower() == "host" and " (use conf.host)" or "")
    end
    if type(value) ~= "string" and type(value) ~= "number" then
      return format("%s.%s: expected a string, got %s", at, name, type(value))
    end
    if type(value) == "string" and find(value, "[%z\r\n]") then
      return format("%s.%s: a field value cannot hold CR, LF or NUL", at, name)
    end
  end
  return nil
end

local function check_headers(h)
  if not h then return nil end
  local err = check_field_map(h.set or {}, "conf.headers.set") or check_field_map(h.add or {}, "conf.headers.add")
  if err then return err end
  for i, name in ipairs(h.remove or {}) do
    if MANAGED[name:lower()] then return format("conf.headers.remove[%d]: the gateway manages this field", i) end
  end
  return nil
end

return {
  name = "proxy-rewrite",
  version = "1.0",
  priority = 1008,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      -- The upstream path: "/x/{param}/y", params from the route's path pattern.
      uri = { type = "string", pattern = "^/", maxLength = 4096 },
      -- [pattern, replacement]: the path matched by a PCRE2 expression, replaced with $1, ${name}.
      regex_uri = { type = "array", minItems = 2, maxItems = 2,
                    items = { type = "string", minLength = 1, maxLength = 4096 } },
      host = { type = "string", pattern = "^[A-Za-z0-9.:\\[\\]_-]+$", maxLength = 255 },
      -- The method the upstream gets.
      method = { type = "string", pattern = TOKEN, maxLength = 32 },
      headers = {
        type = "object",
        additionalProperties = false,
        properties = {
          set = { type = "object" },
          add = { type = "object" },
          remove = { type = "array", items = { type = "string", pattern = TOKEN } },
        },
      },
    },
  },

  check_schema = function(conf)
    if conf.uri and conf.regex_uri then return false, "conf: give uri or regex_uri, not both" end
    if conf.regex_uri then
      local _, err = regex.compile(conf.regex_uri[1])
      if err then return false, "conf.regex_uri[1]: invalid regular expression: " .. err end
      if sub(conf.regex_uri[2], 1, 1) ~= "/" then
        return false, 'conf.regex_uri[2]: the replacement is a path: it must start with "/"'
      end
    end
    if conf.method == "HEAD" or conf.method == "CONNECT" then
      return false, "conf.method: " .. conf.method .. " cannot be set (the response's framing depends on it)"
    end
    local err = check_headers(conf.headers)
    if err then return false, err end
    return true
  end,

  rewrite = function(conf)
    local c = compile(conf)
    local uri
    if c.uri then
      uri = expand(c.uri)
    elseif c.regex then
      local m = c.regex:match(request.get_path())
      if m then uri = substitute(conf.regex_uri[2], m) end
    end
    if uri and not send_uri(uri) then
      turnpike.log.warn("cannot send the rewritten path ", json.encode(uri), " upstream")
      return turnpike.exit(500, FAILED, JSON)
    end
    if conf.host then request.set_host(conf.host) end
    if conf.method and not request.set_method(conf.method) then
      turnpike.log.info("a ", request.get_method(), " request keeps its method (not ", conf.method, ")")
    end
    if conf.headers then rewrite_headers(conf.headers) end
  end,
}
