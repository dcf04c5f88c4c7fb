-- turnpike.base64: base64 (RFC 4648 §4) and base64url (§5) encoding and strict decoding.
--
--   local base64 = require "turnpike.base64"
--   base64.encode("hi?")          --> "aGk/"
--   base64.decode("aGk/")         --> "hi?"       (nil, "invalid base64 at byte 3" on bad input)
--   base64.encode_url("hi?")      --> "aGk_"      (no padding: JWT segments, RFC 7515 §2)
--   base64.decode_url("aGk_")     --> "hi?"       (padding optional)
--
-- Pure Lua over one output buffer per worker VM (an FFI byte array grown as needed), so a call
-- allocates only its result string.
local ffi = require "ffi"

local byte, band, bor, lshift, rshift = string.byte, bit.band, bit.bor, bit.lshift, bit.rshift

local base64 = {}

local STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local PAD = byte("=")

-- alphabet → { [0..63] = character code }, and { [0..255] = value, -1 outside the alphabet }
local function tables(alphabet)
  local enc, dec = {}, {}
  for i = 0, 255 do dec[i] = -1 end
  for i = 0, 63 do
    local c = byte(alphabet, i + 1)
    enc[i], dec[c] = c, i
  end
  return enc, dec
end
local std_enc, std_dec = tables(STD)
local url_enc, url_dec = tables(URL)

local buf, buf_size = nil, 0
local function buffer(n)
  if n > buf_size then
    buf_size = math.max(n, 256)
    buf = ffi.new("uint8_t[?]", buf_size)
  end
  return buf
end

local function encode(s, enc, pad)
  if type(s) ~= "string" then error("base64: expected a string, got " .. type(s), 3) end
  local n = #s
  local out = buffer(math.floor((n + 2) / 3) * 4)
  local o = 0
  local full = n - n % 3
  for i = 1, full, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = bor(lshift(a, 16), lshift(b, 8), c)
    out[o] = enc[rshift(v, 18)]
    out[o + 1] = enc[band(rshift(v, 12), 63)]
    out[o + 2] = enc[band(rshift(v, 6), 63)]
    out[o + 3] = enc[band(v, 63)]
    o = o + 4
  end
  local rest = n - full
  if rest > 0 then
    local a, b = byte(s, full + 1, n)
    local v = bor(lshift(a, 16), lshift(b or 0, 8))
    out[o] = enc[rshift(v, 18)]
    out[o + 1] = enc[band(rshift(v, 12), 63)]
    o = o + 2
    if rest == 2 then
      out[o] = enc[band(rshift(v, 6), 63)]
      o = o + 1
    elseif pad then
      out[o] = PAD
      o = o + 1
    end
    if pad then
      out[o] = PAD
      o = o + 1
    end
  end
  return ffi.string(out, o)
end

local function invalid(pos)
  return nil, "invalid base64 at byte " .. pos
end

-- Decodes `s`; `padded`: true the length must be a multiple of 4 with "=" padding, false
-- padding is optional (base64url). Bits left over in the last character are ignored.
local function decode(s, dec, padded)
  if type(s) ~= "string" then error("base64: expected a string, got " .. type(s), 3) end
  local n = #s
  -- The padding: at most two "=", only at the end, and only to complete a group of 4.
  local data = n
  if n > 0 and byte(s, n) == PAD then
    data = byte(s, n - 1) == PAD and n - 2 or n - 1
    if n % 4 ~= 0 then return invalid(data + 1) end
  elseif padded and n % 4 ~= 0 then
    return nil, "invalid base64 length " .. n
  end
  local rest = data % 4
  if rest == 1 then return nil, "invalid base64 length " .. n end
  local out = buffer(math.floor(data / 4) * 3 + 2)
  local o = 0
  local full = data - rest
  for i = 1, full, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    a, b, c, d = dec[a], dec[b], dec[c], dec[d]
    if bor(a, b, c, d) < 0 then
      for k = 0, 3 do if dec[byte(s, i + k)] < 0 then return invalid(i + k) end end
    end
    local v = bor(lshift(a, 18), lshift(b, 12), lshift(c, 6), d)
    out[o] = rshift(v, 16)
    out[o + 1] = band(rshift(v, 8), 255)
    out[o + 2] = band(v, 255)
    o = o + 3
  end
  if rest > 0 then
    local v = 0
    for k = 0, rest - 1 do
      local x = dec[byte(s, full + 1 + k)]
      if x < 0 then return invalid(full + 1 + k) end
      v = bor(v, lshift(x, 18 - 6 * k))
    end
    out[o] = rshift(v, 16)
    o = o + 1
    if rest == 3 then
      out[o] = band(rshift(v, 8), 255)
      o = o + 1
    end
  end
  return ffi.string(out, o)
end

-- Standard alphabet, "=" padding.
function base64.encode(s) return encode(s, std_enc, true) end
-- Standard alphabet; the length must be a multiple of 4. Returns nil, message on bad input.
function base64.decode(s) return decode(s, std_dec, true) end
-- URL-safe alphabet ("-", "_"), no padding.
function base64.encode_url(s) return encode(s, url_enc, false) end
-- URL-safe alphabet, with or without padding. Returns nil, message on bad input.
function base64.decode_url(s) return decode(s, url_dec, false) end

return base64
