-- turnpike.json: JSON (RFC 8259) encoding and strict decoding, in pure Lua for the JIT.
--
--   local json = require "turnpike.json"
--   json.encode({ sub = "alice", roles = { "admin" }, n = 3 })
--     --> {"n":3,"roles":["admin"],"sub":"alice"}
--   local claims, err = json.decode(text)   -- nil, "unexpected ',' at byte 12" on bad input
--
-- Mapping. Decoding: objects and arrays become tables (arrays carry json.array_mt, so an empty
-- one encodes back as []), null becomes json.null, numbers Lua numbers. Encoding: a table whose
-- keys are exactly 1..n is an array, any other table an object with its keys in sorted order
-- (the output is deterministic); an empty table is {} unless it is json.empty_array or has
-- json.array_mt. Integers print without ".0"; NaN and infinities are errors.
--
-- Hostile input: nesting deeper than json.max_depth (512) is refused, text must be UTF-8, and
-- every rule of the grammar is checked (no trailing commas, leading zeros, lone surrogates,
-- unescaped control characters, trailing garbage).
local byte, char, find, sub, format, concat = string.byte, string.char, string.find, string.sub,
  string.format, table.concat
local type, pairs, tostring, tonumber, setmetatable, getmetatable, error, pcall =
  type, pairs, tostring, tonumber, setmetatable, getmetatable, error, pcall
local floor, huge = math.floor, math.huge
local band, bor, rshift = bit.band, bit.bor, bit.rshift

local json = { max_depth = 512 }

json.array_mt = { __name = "json.array" }
json.null = setmetatable({}, {
  __name = "json.null",
  __tostring = function() return "null" end,
  __newindex = function() error("json.null is read-only", 2) end,
})
json.empty_array = setmetatable({}, {
  __name = "json.empty_array",
  __newindex = function() error("json.empty_array is read-only", 2) end,
})
local null, array_mt, empty_array = json.null, json.array_mt, json.empty_array

-- ---- Decoding --------------------------------------------------------------------------------

-- Errors inside the parser are raised as this table's instances and turned into nil, message by
-- decode (a Lua error from anything else is a bug and propagates).
local Failure = {}

local function fail(message, pos)
  error(setmetatable({ message = message .. " at byte " .. pos }, Failure), 0)
end

local function describe(b)
  if b == nil then return "end of text" end
  if b < 32 or b > 126 then return format("byte 0x%02x", b) end
  return "'" .. char(b) .. "'"
end

-- Position and value of the first byte at or after pos that is not JSON whitespace (§2).
local function skip(s, pos)
  local b = byte(s, pos)
  if b ~= 32 and b ~= 9 and b ~= 10 and b ~= 13 then return pos, b end
  pos = find(s, "[^ \t\n\r]", pos + 1)
  if not pos then return #s + 1, nil end
  return pos, byte(s, pos)
end

local ESCAPES = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n",
                  [114] = "\r", [116] = "\t" }

local function hex4(s, pos)
  local digits = sub(s, pos, pos + 3)
  if not find(digits, "^%x%x%x%x$") then fail("invalid \\u escape", pos - 2) end
  return tonumber(digits, 16)
end

local function utf8(cp)
  if cp < 0x80 then return char(cp) end
  if cp < 0x800 then return char(bor(0xC0, rshift(cp, 6)), bor(0x80, band(cp, 0x3F))) end
  if cp < 0x10000 then
    return char(bor(0xE0, rshift(cp, 12)), bor(0x80, band(rshift(cp, 6), 0x3F)),
                bor(0x80, band(cp, 0x3F)))
  end
  return char(bor(0xF0, rshift(cp, 18)), bor(0x80, band(rshift(cp, 12), 0x3F)),
              bor(0x80, band(rshift(cp, 6), 0x3F)), bor(0x80, band(cp, 0x3F)))
end

-- A \u escape at pos (the backslash); §7: a character outside the BMP is a surrogate pair.
-- Returns the UTF-8 bytes and the position after the escape(s).
local function unicode_escape(s, pos)
  local cp = hex4(s, pos + 2)
  if cp >= 0xDC00 and cp <= 0xDFFF then fail("lone low surrogate", pos) end
  if cp >= 0xD800 and cp <= 0xDBFF then
    if byte(s, pos + 6) ~= 92 or byte(s, pos + 7) ~= 117 then fail("lone high surrogate", pos) end
    local low = hex4(s, pos + 8)
    if low < 0xDC00 or low > 0xDFFF then fail("lone high surrogate", pos) end
    return utf8(0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)), pos + 12
  end
  return utf8(cp), pos + 6
end

-- The string whose opening quote is at pos, and the position after its closing quote. §7:
-- control characters must be escaped; the escapes are the ones in ESCAPES and \uXXXX.
local function parse_string(s, pos)
  local start = pos + 1
  local stop = find(s, '[%z\1-\31"\\]', start)
  if stop and byte(s, stop) == 34 then return sub(s, start, stop - 1), stop + 1 end
  local parts, n = {}, 0
  while true do
    if not stop then fail("unterminated string", pos) end
    local b = byte(s, stop)
    if b == 34 then
      n = n + 1
      parts[n] = sub(s, start, stop - 1)
      return concat(parts, "", 1, n), stop + 1
    end
    if b < 32 then fail("unescaped control character in string", stop) end
    n = n + 1
    parts[n] = sub(s, start, stop - 1)
    local e = byte(s, stop + 1)
    local plain = ESCAPES[e]
    n = n + 1
    if plain then
      parts[n], start = plain, stop + 2
    elseif e == 117 then
      parts[n], start = unicode_escape(s, stop)
    else
      fail("invalid escape", stop)
    end
    stop = find(s, '[%z\1-\31"\\]', start)
  end
end

-- §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
local function parse_number(s, pos)
  local _, last = find(s, "^-?%d+", pos)
  if not last then fail("invalid number", pos) end
  local first = byte(s, pos) == 45 and pos + 1 or pos
  if byte(s, first) == 48 and last > first then fail("leading zero in number", pos) end
  local b = byte(s, last + 1)
  if b == 46 then
    _, last = find(s, "^%d+", last + 2)
    if not last then fail("digits expected after '.'", pos) end
    b = byte(s, last + 1)
  end
  if b == 101 or b == 69 then
    _, last = find(s, "^[-+]?%d+", last + 2)
    if not last then fail("digits expected in exponent", pos) end
  end
  local v = tonumber(sub(s, pos, last))
  if v == huge or v == -huge then fail("number out of range", pos) end
  return v, last + 1
end

local parse_value

local function parse_array(s, pos, depth)
  local arr, n = setmetatable({}, array_mt), 0
  local b
  pos, b = skip(s, pos + 1)
  if b == 93 then return arr, pos + 1 end
  while true do
    n = n + 1
    arr[n], pos = parse_value(s, pos, depth)
    pos, b = skip(s, pos)
    if b == 93 then return arr, pos + 1 end
    if b ~= 44 then fail("expected ',' or ']', got " .. describe(b), pos) end
    pos = pos + 1
  end
end

local function parse_object(s, pos, depth)
  local obj = {}
  local b
  pos, b = skip(s, pos + 1)
  if b == 125 then return obj, pos + 1 end
  while true do
    if b ~= 34 then fail("expected a string key, got " .. describe(b), pos) end
    local key
    key, pos = parse_string(s, pos)
    pos, b = skip(s, pos)
    if b ~= 58 then fail("expected ':', got " .. describe(b), pos) end
    obj[key], pos = parse_value(s, pos + 1, depth)
    pos, b = skip(s, pos)
    if b == 125 then return obj, pos + 1 end
    if b ~= 44 then fail("expected ',' or '}', got " .. describe(b), pos) end
    pos, b = skip(s, pos + 1)
  end
end

local function literal(s, pos, word, value)
  if sub(s, pos, pos + #word - 1) ~= word then fail("invalid literal", pos) end
  return value, pos + #word
end

-- The value starting at or after pos (whitespace first), and the position after it.
function parse_value(s, pos, depth)
  local b
  pos, b = skip(s, pos)
  if b == 34 then return parse_string(s, pos) end
  if b == 123 or b == 91 then
    if depth >= json.max_depth then fail("nesting deeper than " .. json.max_depth, pos) end
    if b == 123 then return parse_object(s, pos, depth + 1) end
    return parse_array(s, pos, depth + 1)
  end
  if b == 45 or (b and b >= 48 and b <= 57) then return parse_number(s, pos) end
  if b == 116 then return literal(s, pos, "true", true) end
  if b == 102 then return literal(s, pos, "false", false) end
  if b == 110 then return literal(s, pos, "null", null) end
  fail("unexpected " .. describe(b), pos)
end

-- Position of the first byte of s that is not part of valid UTF-8 (RFC 3629 §4: no overlong
-- forms, no surrogates, nothing above U+10FFFF), or nil.
local function invalid_utf8(s)
  local pos = find(s, "[\128-\255]")
  while pos do
    local a, b, c, d = byte(s, pos, pos + 3)
    local len
    if a >= 0xC2 and a <= 0xDF then
      len = (b and b >= 0x80 and b <= 0xBF) and 2
    elseif a >= 0xE0 and a <= 0xEF then
      local lo = a == 0xE0 and 0xA0 or 0x80
      local hi = a == 0xED and 0x9F or 0xBF
      len = (b and b >= lo and b <= hi and c and c >= 0x80 and c <= 0xBF) and 3
    elseif a >= 0xF0 and a <= 0xF4 then
      local lo = a == 0xF0 and 0x90 or 0x80
      local hi = a == 0xF4 and 0x8F or 0xBF
      len = (b and b >= lo and b <= hi and c and c >= 0x80 and c <= 0xBF and d and d >= 0x80
             and d <= 0xBF) and 4
    end
    if not len then return pos end
    pos = find(s, "[\128-\255]", pos + len)
  end
end

local function decode(text)
  local value, pos = parse_value(text, 1, 0)
  local b
  pos, b = skip(text, pos)
  if b ~= nil then fail("unexpected " .. describe(b) .. " after the value", pos) end
  return value
end

-- The value of the JSON text, or nil and a message with the byte position.
function json.decode(text)
  if type(text) ~= "string" then return nil, "expected a string, got " .. type(text) end
  local bad = invalid_utf8(text)
  if bad then return nil, "invalid UTF-8 at byte " .. bad end
  local ok, value = pcall(decode, text)
  if ok then return value end
  if getmetatable(value) == Failure then return nil, value.message end
  error(value, 0)
end

-- ---- Encoding --------------------------------------------------------------------------------

-- §7: '"', '\' and the control characters must be escaped.
local STRING_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                         ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
for i = 0, 31 do
  local c = char(i)
  STRING_ESCAPES[c] = STRING_ESCAPES[c] or format("\\u%04x", i)
end

local function encode_string(s)
  if not find(s, '[%z\1-\31"\\]') then return '"' .. s .. '"' end
  return '"' .. s:gsub('[%z\1-\31"\\]', STRING_ESCAPES) .. '"'
end

local function encode_number(v)
  if v ~= v then error("json.encode: cannot encode NaN", 0) end
  if v == huge or v == -huge then error("json.encode: cannot encode an infinity", 0) end
  if v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
  -- The shortest of these that reads back as the same number.
  local s = format("%.14g", v)
  if tonumber(s) ~= v then
    s = format("%.16g", v)
    if tonumber(s) ~= v then s = format("%.17g", v) end
  end
  return s
end

local encode_value

-- Appends the array t[1..n] to buf.
local function encode_array(t, n, buf, len, depth)
  if n == 0 then
    len = len + 1
    buf[len] = "[]"
    return len
  end
  len = len + 1
  buf[len] = "["
  for i = 1, n do
    if i > 1 then
      len = len + 1
      buf[len] = ","
    end
    len = encode_value(t[i], buf, len, depth)
  end
  len = len + 1
  buf[len] = "]"
  return len
end

local function key_string(k)
  local kt = type(k)
  if kt == "string" then return k end
  if kt == "number" then return encode_number(k) end
  error("json.encode: cannot encode a " .. kt .. " key", 0)
end

local function encode_table(t, buf, len, depth)
  local mt = getmetatable(t)
  if mt == array_mt or t == empty_array then return encode_array(t, #t, buf, len, depth) end
  -- An array when its keys are exactly 1..count.
  local count, max, array = 0, 0, true
  for k in pairs(t) do
    count = count + 1
    if array then
      if type(k) == "number" and k >= 1 and k % 1 == 0 then
        if k > max then max = k end
      else
        array = false
      end
    end
  end
  if count == 0 then
    len = len + 1
    buf[len] = "{}"
    return len
  end
  if array and max == count then return encode_array(t, count, buf, len, depth) end
  local keys, by_string = {}, {}
  local n = 0
  for k in pairs(t) do
    local ks = key_string(k)
    n = n + 1
    keys[n] = ks
    by_string[ks] = k
  end
  table.sort(keys)
  len = len + 1
  buf[len] = "{"
  for i = 1, n do
    local ks = keys[i]
    len = len + 1
    buf[len] = (i > 1 and "," or "") .. encode_string(ks) .. ":"
    len = encode_value(t[by_string[ks]], buf, len, depth)
  end
  len = len + 1
  buf[len] = "}"
  return len
end

function encode_value(v, buf, len, depth)
  local vt = type(v)
  local s
  if vt == "string" then
    s = encode_string(v)
  elseif vt == "number" then
    s = encode_number(v)
  elseif vt == "boolean" then
    s = v and "true" or "false"
  elseif v == null or v == nil then
    s = "null"
  elseif vt == "table" then
    if depth >= json.max_depth then
      error("json.encode: nesting deeper than " .. json.max_depth .. " (a cycle?)", 0)
    end
    return encode_table(v, buf, len, depth + 1)
  else
    error("json.encode: cannot encode a " .. vt, 0)
  end
  len = len + 1
  buf[len] = s
  return len
end

-- The JSON text of `value`. Raises an error for what JSON cannot say (NaN, infinities,
-- functions, keys other than strings and numbers, nesting beyond max_depth, cycles).
function json.encode(value)
  local buf = {}
  local len = encode_value(value, buf, 0, 0)
  return concat(buf, "", 1, len)
end

return json
