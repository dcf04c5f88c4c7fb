-- request-id: gives every request an id, sent upstream, returned to the client and written to
-- the access log (rid=...), so one request can be followed through every service it reaches.
--
--   plugins:                      # global: every route
--     request-id: { header_name: X-Request-Id }
--
-- A request that arrives with an id keeps it, when it is 1 to 128 characters of letters, digits
-- and "-_.:" (anything else could forge log lines or is not an id, and is replaced). Otherwise a
-- random UUID (version 4, RFC 9562 §5.4) is made from the system's secure random generator.
local turnpike = require "turnpike"
local crypto = require "turnpike.crypto"

local request, response = turnpike.request, turnpike.response
local byte, sub, format = string.byte, string.sub, string.format
local bit = require "bit"
local band, bor = bit.band, bit.bor

-- Random bytes are drawn in batches: one RAND_bytes call per 64 ids.
local BATCH = 16 * 64
local pool, used = "", BATCH

local function uuid4()
  if used >= BATCH then pool, used = crypto.random_bytes(BATCH), 0 end
  local b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16 =
    byte(pool, used + 1, used + 16)
  used = used + 16
  -- Version 4 in the high nibble of byte 7, variant 10 in the top bits of byte 9 (RFC 9562 §5.4).
  b7 = bor(band(b7, 0x0f), 0x40)
  b9 = bor(band(b9, 0x3f), 0x80)
  return format("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16)
end

local function acceptable(id)
  return id and #id <= 128 and not id:find("[^%w%-_.:]") and id ~= ""
end

return {
  name = "request-id",
  version = "1.0",
  priority = 12015,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      header_name = { type = "string", default = "X-Request-Id", pattern = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" },
      -- Return the id to the client in the same header.
      include_in_response = { type = "boolean", default = true },
    },
  },

  rewrite = function(conf, ctx)
    local id = request.get_header(conf.header_name)
    if not acceptable(id) then
      id = uuid4()
      request.set_header(conf.header_name, id)
    end
    request.set_id(id)
    ctx.request_id = id
  end,

  header_filter = function(conf, ctx)
    if conf.include_in_response and ctx.request_id then
      response.set_header(conf.header_name, ctx.request_id)
    end
  end,
}
