-- Plugin conf validation: a JSON-schema subset written as Lua tables.
--
--   type                 "string" | "integer" | "number" | "boolean" | "object" | "array"
--   enum                 list of allowed values
--   minimum, maximum     numbers (inclusive)
--   minLength, maxLength string length in bytes
--   pattern              a regular expression (PCRE2, as JSON Schema's ECMA-262 ones read) the
--                        string must contain a match of; anchor it with ^...$ for the whole
--                        string. Compiled once per schema.
--   properties           { key = schema, ... }
--   required             { "key", ... }
--   additionalProperties false: keys not in properties are errors
--   items                schema of every element;  minItems, maxItems
--   default              filled in when the key is absent (a copy, so confs never share it)
--   description, title   ignored
--
-- validate() reports every problem at once, each as "path: what is wrong", the path starting at
-- "conf" (conf.nodes[2].host).
local schema = {}
local regex = require "turnpike.regex"

-- Compiled patterns by their source (schemas are few and long-lived).
local compiled = {}
local function pattern_of(source)
  local re = compiled[source]
  if re == nil then
    local err
    re, err = regex.compile(source)
    if not re then return nil, err end
    compiled[source] = re
  end
  return re
end

local TYPES = { string = true, integer = true, number = true, boolean = true, object = true,
                array = true }
local KEYWORDS = { type = true, enum = true, minimum = true, maximum = true, minLength = true,
                   maxLength = true, pattern = true, properties = true, required = true,
                   additionalProperties = true, items = true, minItems = true, maxItems = true,
                   default = true, description = true, title = true }

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local copy = {}
  for k, x in pairs(v) do copy[k] = deep_copy(x) end
  return copy
end

-- A Lua table is an array when its keys are exactly 1..n (an empty table is both).
local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

local function is_object(t)
  for k in pairs(t) do
    if type(k) ~= "string" then return false end
  end
  return true
end

local function type_of(v)
  local t = type(v)
  if t == "number" then return v % 1 == 0 and "integer" or "number" end
  if t == "table" then
    if next(v) == nil then return "empty table" end
    return is_array(v) and "array" or "object"
  end
  return t
end

local function has_type(v, want)
  local t = type(v)
  if want == "string" or want == "boolean" then return t == want end
  if want == "number" then return t == "number" end
  if want == "integer" then return t == "number" and v % 1 == 0 end
  if want == "array" then return t == "table" and is_array(v) end
  if want == "object" then return t == "table" and is_object(v) end
  return false
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local validate_value

local function validate_object(def, obj, path, errors)
  local props = def.properties or {}
  for _, key in ipairs(sorted_keys(props)) do
    if obj[key] == nil and props[key].default ~= nil then
      obj[key] = deep_copy(props[key].default)
    end
  end
  for _, key in ipairs(def.required or {}) do
    if obj[key] == nil then errors[#errors + 1] = path .. "." .. key .. ": required" end
  end
  for _, key in ipairs(sorted_keys(obj)) do
    local sub = props[key]
    if sub then
      validate_value(sub, obj[key], path .. "." .. key, errors)
    elseif def.additionalProperties == false then
      errors[#errors + 1] = path .. "." .. tostring(key) .. ": unknown property"
    end
  end
end

local function validate_array(def, arr, path, errors)
  if def.minItems and #arr < def.minItems then
    errors[#errors + 1] = path .. ": expected at least " .. def.minItems .. " items, got " .. #arr
  end
  if def.maxItems and #arr > def.maxItems then
    errors[#errors + 1] = path .. ": expected at most " .. def.maxItems .. " items, got " .. #arr
  end
  if def.items then
    for i = 1, #arr do validate_value(def.items, arr[i], path .. "[" .. i .. "]", errors) end
  end
end

function validate_value(def, v, path, errors)
  if def.type and not has_type(v, def.type) then
    errors[#errors + 1] = path .. ": expected " .. def.type .. ", got " .. type_of(v)
    return
  end
  if def.enum then
    local found = false
    for _, allowed in ipairs(def.enum) do
      if v == allowed then found = true break end
    end
    if not found then
      local shown = {}
      for i, allowed in ipairs(def.enum) do shown[i] = show(allowed) end
      errors[#errors + 1] = path .. ": expected one of " .. table.concat(shown, ", ")
                            .. ", got " .. show(v)
      return
    end
  end
  local t = type(v)
  if t == "number" then
    if def.minimum and v < def.minimum then
      errors[#errors + 1] = path .. ": expected at least " .. def.minimum .. ", got " .. v
    end
    if def.maximum and v > def.maximum then
      errors[#errors + 1] = path .. ": expected at most " .. def.maximum .. ", got " .. v
    end
  elseif t == "string" then
    if def.minLength and #v < def.minLength then
      errors[#errors + 1] = path .. ": expected at least " .. def.minLength .. " characters, got " .. #v
    end
    if def.maxLength and #v > def.maxLength then
      errors[#errors + 1] = path .. ": expected at most " .. def.maxLength .. " characters, got " .. #v
    end
    if def.pattern and not (pattern_of(def.pattern) and pattern_of(def.pattern):find(v)) then
      errors[#errors + 1] = path .. ": does not match the pattern " .. show(def.pattern)
    end
  elseif t == "table" then
    if def.type == "array" or (def.type == nil and def.items) then
      validate_array(def, v, path, errors)
    elseif def.type == "object" or (def.type == nil and def.properties) then
      validate_object(def, v, path, errors)
    end
  end
end

-- Validates `conf` against `def`, filling defaults into it. Returns true, or false and the list
-- of every error.
function schema.validate(def, conf)
  local errors = {}
  validate_value(def, conf, "conf", errors)
  if #errors > 0 then return false, errors end
  return true
end

-- Problems with a schema definition itself (a plugin's `schema` field), as a list of strings
-- ("schema.properties.key: unknown keyword 'requried'"). Checked when the plugin loads.
local check_def

local function check_number(def, key, path, errors)
  if def[key] ~= nil and type(def[key]) ~= "number" then
    errors[#errors + 1] = path .. "." .. key .. ": expected a number"
  end
end

function check_def(def, path, errors)
  if type(def) ~= "table" then
    errors[#errors + 1] = path .. ": expected a table, got " .. type(def)
    return
  end
  for _, key in ipairs(sorted_keys(def)) do
    if not KEYWORDS[key] then
      errors[#errors + 1] = path .. ": unknown keyword '" .. tostring(key) .. "'"
    end
  end
  if def.type ~= nil and not TYPES[def.type] then
    errors[#errors + 1] = path .. ".type: unknown type " .. show(def.type)
  end
  for _, key in ipairs({ "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems" }) do
    check_number(def, key, path, errors)
  end
  if def.enum ~= nil and (type(def.enum) ~= "table" or #def.enum == 0) then
    errors[#errors + 1] = path .. ".enum: expected a non-empty list"
  end
  if def.pattern ~= nil then
    if type(def.pattern) ~= "string" then
      errors[#errors + 1] = path .. ".pattern: expected a string"
    else
      local ok, err = pattern_of(def.pattern)
      if not ok then
        errors[#errors + 1] = path .. ".pattern: not a valid regular expression (" .. tostring(err) .. ")"
      end
    end
  end
  if def.required ~= nil then
    if type(def.required) ~= "table" then
      errors[#errors + 1] = path .. ".required: expected a list of property names"
    else
      for _, key in ipairs(def.required) do
        if type(key) ~= "string" then
          errors[#errors + 1] = path .. ".required: expected a list of property names"
          break
        end
      end
    end
  end
  if def.additionalProperties ~= nil and type(def.additionalProperties) ~= "boolean" then
    errors[#errors + 1] = path .. ".additionalProperties: expected a boolean"
  end
  if def.properties ~= nil then
    if type(def.properties) ~= "table" then
      errors[#errors + 1] = path .. ".properties: expected a table"
    else
      for _, key in ipairs(sorted_keys(def.properties)) do
        check_def(def.properties[key], path .. ".properties." .. tostring(key), errors)
      end
    end
  end
  if def.items ~= nil then check_def(def.items, path .. ".items", errors) end
  if def.default ~= nil and #errors == 0 then
    -- A default must itself be valid, or every conf that omits the key would be invalid.
    local copy = deep_copy(def.default)
    local ok, errs = schema.validate(def, copy)
    if not ok then
      errors[#errors + 1] = path .. ".default: invalid (" .. errs[1]:gsub("^conf", "default") .. ")"
    end
  end
end

function schema.check_definition(def)
  local errors = {}
  check_def(def, "schema", errors)
  return errors
end

return schema
