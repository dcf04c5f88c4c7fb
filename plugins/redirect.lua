-- redirect: answers with a redirect instead of proxying: to the same URL over https, to a URI
-- template, or to a regular expression's replacement of the path.
--
--   routes:
--     - name: plain-http
--       plugins:
--         redirect: { http_to_https: true }
--     - name: old-docs
--       match: { paths: ["/docs/{page}"] }
--       plugins:
--         redirect: { uri: "https://docs.example.com/v2/{page}", ret_code: 301 }
--     - name: moved
--       plugins:
--         redirect: { regex_uri: ["^/blog/(\\d+)/(.*)$", "/posts/$2?id=$1"] }
--
-- http_to_https keeps host, path and query and answers 301 to GET and HEAD, 308 to other
-- methods so they are repeated with the same method and body (RFC 9110 §15.4.9); a request that
-- came over https is proxied as usual. The port of the Host is replaced by https_port (left out
-- when 443). `uri` takes the route's {param} values; regex_uri matches the normalized path and a
-- path it does not match is proxied as usual. append_query_string adds the request's query.
local turnpike = require "turnpike"
local regex = require "turnpike.regex"
local template = require "turnpike.template"

local request = turnpike.request
local concat, find, sub, type, tonumber = table.concat, string.find, string.sub, type, tonumber

local parse_template, expand, substitute = template.parse, template.expand, template.substitute

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

local function with_query(location)
  local query = request.get_query()
  if not query or query == "" then return location end
  return location .. (find(location, "?", 1, true) and "&" or "?") .. query
end

local function redirect(status, location)
  return turnpike.exit(status, nil, { Location = location })
end

-- The https URL of this request: Host without its port, then https_port unless 443.
local function https_location(conf)
  local host = request.get_host() or ""
  host = host:match("^(%[[^%]]*%])") or host:match("^([^:]*)")
  local port = conf.https_port ~= 443 and (":" .. conf.https_port) or ""
  -- The normalized path, not the raw target: an absolute-form target carries scheme and host.
  local query = request.get_query()
  return "https://" .. host .. port .. request.get_path() .. (query and ("?" .. query) or "")
end

local function to_https(conf)
  if request.get_scheme() == "https" then return end
  local status = conf.ret_code
  if not status then
    local method = request.get_method()
    status = (method == "GET" or method == "HEAD") and 301 or 308
  end
  return redirect(status, https_location(conf))
end

return {
  name = "redirect",
  version = "1.0",
  priority = 900,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      http_to_https = { type = "boolean", default = false },
      https_port = { type = "integer", minimum = 1, maximum = 65535, default = 443 },
      -- A path or absolute URL with the route's {param} values.
      uri = { type = "string", minLength = 1, maxLength = 4096, pattern = "^[^\\x00-\\x20\\x7f]+$" },
      -- [pattern, replacement]: the path matched by a PCRE2 expression, replaced with $1, ${name}.
      regex_uri = { type = "array", minItems = 2, maxItems = 2,
                    items = { type = "string", minLength = 1, maxLength = 4096 } },
      ret_code = { type = "integer", enum = { 301, 302, 303, 307, 308 } },
      append_query_string = { type = "boolean", default = false },
    },
  },

  check_schema = function(conf)
    local given = (conf.http_to_https and 1 or 0) + (conf.uri and 1 or 0) + (conf.regex_uri and 1 or 0)
    if given ~= 1 then return false, "conf: give exactly one of http_to_https, uri and regex_uri" end
    if conf.regex_uri then
      local _, err = regex.compile(conf.regex_uri[1])
      if err then return false, "conf.regex_uri[1]: invalid regular expression: " .. err end
      if find(conf.regex_uri[2], "[%c ]") then
        return false, "conf.regex_uri[2]: a location cannot hold spaces or control characters"
      end
    end
    return true
  end,

  rewrite = function(conf)
    if conf.http_to_https then return to_https(conf) end
    local c = compile(conf)
    local location
    if c.uri then
      location = expand(c.uri)
    else
      local m = c.regex:match(request.get_path())
      if not m then return end
      location = substitute(conf.regex_uri[2], m)
    end
    if conf.append_query_string then location = with_query(location) end
    return redirect(conf.ret_code or 302, location)
  end,
}
