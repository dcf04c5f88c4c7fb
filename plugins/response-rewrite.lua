-- response-rewrite: changes the response the client gets: its status, header fields, or its
-- whole body.
--
--   routes:
--     - name: legacy
--       plugins:
--         response-rewrite:
--           status_code: 200
--           headers:
--             set: { Cache-Control: "no-store" }
--             remove: [Server, X-Powered-By]
--           body: '{"status":"moved to /v2"}'
--
-- Without `body`, the status and header fields are changed and the upstream's body streams
-- through as it is. With `body`, the response is replaced: the client gets `body`, the new status
-- (the upstream's when status_code is not set), the upstream's Content-Type unless
-- headers.set gives one, and the header fields of headers.set and headers.add. The upstream's
-- other header fields and its body are dropped, and its connection is closed rather than reused
-- (its body is not read). Responses the gateway makes itself (a denial, an error page) are
-- rewritten too.
local turnpike = require "turnpike"
local json = require "turnpike.json"

local response = turnpike.response
local format, type, find = string.format, type, string.find

local MANAGED = { connection = true, ["keep-alive"] = true, ["proxy-connection"] = true,
                  ["transfer-encoding"] = true, te = true, trailer = true, upgrade = true,
                  ["content-length"] = true }

-- A field name (RFC 9110 §5.6.2 token): for the schema (PCRE2) and for Lua code.
local TOKEN = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
local TOKEN_LUA = "^[%w!#$%%&'*+.^_`|~-]+$"

local function check_field_map(map, at)
  for name, value in pairs(map) do
    if type(name) ~= "string" or not name:match(TOKEN_LUA) then
      return format("%s: %s is not a field name", at, json.encode(name))
    end
    if MANAGED[name:lower()] then return format("%s.%s: the gateway manages this field", at, name) end
    if type(value) ~= "string" and type(value) ~= "number" then
      return format("%s.%s: expected a string, got %s", at, name, type(value))
    end
    if type(value) == "string" and find(value, "[%z\r\n]") then
      return format("%s.%s: a field value cannot hold CR, LF or NUL", at, name)
    end
  end
  return nil
end

-- The header fields of a replaced response: headers.set, then headers.add joined onto them
-- (turnpike.exit takes one value per name), keyed by lower-case name.
local function exit_headers(conf)
  local out = {}
  local h = conf.headers or {}
  for name, value in pairs(h.set or {}) do out[name:lower()] = tostring(value) end
  for name, value in pairs(h.add or {}) do
    local key = name:lower()
    out[key] = out[key] and (out[key] .. ", " .. tostring(value)) or tostring(value)
  end
  return out
end

local replaced = setmetatable({}, { __mode = "k" })

local function replace(conf)
  local headers = replaced[conf]
  if not headers then
    headers = exit_headers(conf)
    replaced[conf] = headers
  end
  local status = conf.status_code or response.get_status() or 200
  if headers["content-type"] then return turnpike.exit(status, conf.body, headers) end
  -- Keep the upstream's type for the new body; a copy, as the conf's table is shared.
  local with_type = { ["content-type"] = response.get_header("content-type") }
  for name, value in pairs(headers) do with_type[name] = value end
  return turnpike.exit(status, conf.body, with_type)
end

local function rewrite_head(conf)
  if conf.status_code then response.set_status(conf.status_code) end
  local h = conf.headers
  if not h then return end
  for name, value in pairs(h.set or {}) do response.set_header(name, value) end
  for name, value in pairs(h.add or {}) do response.add_header(name, value) end
  for _, name in ipairs(h.remove or {}) do response.set_header(name, nil) end
end

return {
  name = "response-rewrite",
  version = "1.0",
  priority = 899,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      status_code = { type = "integer", minimum = 200, maximum = 599 },
      body = { type = "string", maxLength = 1048576 },
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
    if conf.status_code == nil and conf.body == nil and conf.headers == nil then
      return false, "conf: give status_code, headers or body"
    end
    local h = conf.headers or {}
    local err = check_field_map(h.set or {}, "conf.headers.set") or check_field_map(h.add or {}, "conf.headers.add")
    if err then return false, err end
    for i, name in ipairs(h.remove or {}) do
      if MANAGED[name:lower()] then return false, format("conf.headers.remove[%d]: the gateway manages this field", i) end
    end
    return true
  end,

  header_filter = function(conf)
    if conf.body then return replace(conf) end
    rewrite_head(conf)
  end,
}
