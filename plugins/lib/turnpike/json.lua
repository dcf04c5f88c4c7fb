-- turnpike.json: JSON (RFC 8259) encoding (Lua) and strict decoding (C++ checks and tokenizes,
-- Lua builds the tables).
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
local ffi = require "ffi"

local char, find, sub, format, concat = string.char, string.find, string.sub, string.format,
  table.concat
local type, pairs, tonumber, setmetatable, getmetatable, error =
  type, pairs, tonumber, setmetatable, getmetatable, error
local huge = math.huge

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
-- src/lua/json.cc checks the text and writes a tape of tokens (include/turnpike/lua/json.h);
-- this loop builds the tables from it. Measured: a recursive-descent decoder in Lua took 3-4
-- times as long, as LuaJIT cannot compile its traces (docs/plugins.md, "Library modules").

ffi.cdef [[
typedef struct tp_json_token {
  int32_t type;
  int32_t offset;
  int32_t len;
  int32_t count;
  double number;
} tp_json_token;
int32_t tp_json_parse(const char* text, size_t len, int32_t max_depth,
                      const tp_json_token** tokens, const char** side, char* err,
                      size_t err_len);
]]

local C = ffi.C
local new_table = require "table.new"
local tokens_out = ffi.new("const tp_json_token*[1]")
local side_out = ffi.new("const char*[1]")
local errbuf = ffi.new("char[256]")

-- Token types (json.h).
local T_NULL, T_FALSE, T_TRUE, T_NUMBER, T_STRING, T_STRING_ESC, T_ARRAY, T_OBJECT, T_END,
      T_KEY, T_KEY_ESC = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10

-- The value the n tokens describe. Open containers are kept on `stack` as (container, next
-- array index) pairs; `key` is the pending member name of the object being filled.
local function build(text, tokens, n, side)
  local stack, sp = {}, 0
  local root, cur, index, key = nil, nil, 0, nil
  for i = 0, n - 1 do
    local t = tokens[i]
    local ty = t.type
    local v
    if ty == T_STRING then
      v = sub(text, t.offset + 1, t.offset + t.len)
    elseif ty == T_KEY then
      key = sub(text, t.offset + 1, t.offset + t.len)
    elseif ty == T_NUMBER then
      v = t.number
    elseif ty == T_END then
      index, cur = stack[sp], stack[sp - 1]
      sp = sp - 2
    elseif ty == T_OBJECT then
      v = new_table(0, t.count)
    elseif ty == T_ARRAY then
      v = setmetatable(new_table(t.count, 0), array_mt)
    elseif ty == T_TRUE then
      v = true
    elseif ty == T_FALSE then
      v = false
    elseif ty == T_NULL then
      v = null
    elseif ty == T_STRING_ESC then
      v = ffi.string(side + t.offset, t.len)
    else  -- T_KEY_ESC
      key = ffi.string(side + t.offset, t.len)
    end
    if v ~= nil then
      if cur == nil then
        root = v
      elseif key ~= nil then
        cur[key] = v
        key = nil
      else
        index = index + 1
        cur[index] = v
      end
      if ty == T_OBJECT or ty == T_ARRAY then
        stack[sp + 1], stack[sp + 2] = cur, index
        sp = sp + 2
        cur, index = v, 0
      end
    end
  end
  return root
end

-- The value of the JSON text, or nil and a message with the byte position.
function json.decode(text)
  if type(text) ~= "string" then return nil, "expected a string, got " .. type(text) end
  local n = C.tp_json_parse(text, #text, json.max_depth, tokens_out, side_out, errbuf, 256)
  if n < 0 then return nil, ffi.string(errbuf) end
  return build(text, tokens_out[0], n, side_out[0])
end

-- ---- Encoding --------------------------------------------------------------------------------
-- The text is built as pieces in one table and concatenated once at the end: a string without
-- escapes goes in as itself between quote pieces, so encoding makes no intermediate strings.

-- §7: '"', '\' and the control characters must be escaped.
local STRING_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                         ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
for i = 0, 31 do
  local c = char(i)
  STRING_ESCAPES[c] = STRING_ESCAPES[c] or format("\\u%04x", i)
end

-- Appends the JSON string for s, then `close` ('"' or '":' after a key).
local function put_string(buf, len, s, close)
  buf[len + 1] = '"'
  if find(s, '[%z\1-\31"\\]') then s = s:gsub('[%z\1-\31"\\]', STRING_ESCAPES) end
  buf[len + 2] = s
  buf[len + 3] = close
  return len + 3
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
    buf[len + 1] = "[]"
    return len + 1
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
  -- One pass over the keys: are they exactly 1..count (an array)? Else they are sorted below.
  local keys, count, max, array, numeric = {}, 0, 0, true, nil
  for k in pairs(t) do
    count = count + 1
    keys[count] = k
    if type(k) == "number" then
      if array and k >= 1 and k % 1 == 0 then
        if k > max then max = k end
      else
        array = false
      end
      numeric = numeric or {}
    else
      array = false
    end
  end
  if count == 0 then
    buf[len + 1] = "{}"
    return len + 1
  end
  if array and max == count then return encode_array(t, count, buf, len, depth) end
  -- Keys are written as strings; number keys are mapped back to read their values.
  if numeric then
    for i = 1, count do
      local k = keys[i]
      local ks = key_string(k)
      if ks ~= k then numeric[ks] = k end
      keys[i] = ks
    end
  else
    for i = 1, count do key_string(keys[i]) end  -- raises for boolean, table, ... keys
  end
  table.sort(keys)
  len = len + 1
  buf[len] = "{"
  for i = 1, count do
    local ks = keys[i]
    if i > 1 then
      len = len + 1
      buf[len] = ","
    end
    len = put_string(buf, len, ks, '":')
    local k = ks
    if numeric and numeric[ks] ~= nil then k = numeric[ks] end
    len = encode_value(t[k], buf, len, depth)
  end
  len = len + 1
  buf[len] = "}"
  return len
end

function encode_value(v, buf, len, depth)
  local vt = type(v)
  if vt == "string" then return put_string(buf, len, v, '"') end
  local s
  if vt == "number" then
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
