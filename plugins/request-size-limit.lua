-- request-size-limit: refuses request bodies larger than a route allows, before they are read.
--
--   routes:
--     - name: upload
--       plugins:
--         request-size-limit: { max_body_size: 1048576 }   # bytes
--
-- The check reads the declared Content-Length, so an oversized request is answered 413 at once
-- and its body never goes upstream. A body without Content-Length (chunked, or an HTTP/2 body
-- without content-length) is read ahead up to one byte past the limit and measured: over it is
-- a 413 too, before any byte goes upstream. Up to lua.max_body_buffer can be measured that way;
-- a larger limit lets such bodies stream and the gateway's own limit (limits.max_body_size,
-- counted while the body streams) applies. reject_unknown_length answers them 411 instead.
local turnpike = require "turnpike"
local json = require "turnpike.json"

local request = turnpike.request

local JSON = { ["content-type"] = "application/json" }

-- conf → denial bodies (weak keys).
local bodies = setmetatable({}, { __mode = "k" })

local function denials(conf)
  local d = bodies[conf]
  if d then return d end
  d = {
    too_large = json.encode({ error = "payload_too_large",
                              message = "the request body is larger than " .. conf.max_body_size .. " bytes" }),
    no_length = json.encode({ error = "length_required",
                              message = "a request body needs a Content-Length on this route" }),
  }
  bodies[conf] = d
  return d
end

return {
  name = "request-size-limit",
  version = "1.0",
  priority = 2960,

  schema = {
    type = "object",
    additionalProperties = false,
    required = { "max_body_size" },
    properties = {
      max_body_size = { type = "integer", minimum = 0 },
      -- Answer 411 to a body whose size is not declared (chunked) instead of letting it through.
      reject_unknown_length = { type = "boolean", default = false },
    },
  },

  access = function(conf)
    local length = request.get_content_length()
    if length then
      if length > conf.max_body_size then return turnpike.exit(413, denials(conf).too_large, JSON) end
      return
    end
    if not request.has_body() then return end
    if conf.reject_unknown_length then return turnpike.exit(411, denials(conf).no_length, JSON) end
    local body = request.read_body(conf.max_body_size + 1)
    if body == nil then return end  -- the client's body failed: the gateway answers it
    if #body > conf.max_body_size then return turnpike.exit(413, denials(conf).too_large, JSON) end
    -- (Under the limit, or the limit is above lua.max_body_buffer: the rest streams.)
  end,
}
