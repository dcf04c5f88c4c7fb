-- uri-blocker: refuses requests whose URI matches one of a list of regular expressions.
--
--   routes:
--     - name: site
--       plugins:
--         uri-blocker:
--           block_rules: ["^/wp-admin", "\\.(git|env)(/|$)", "select.+from"]
--           case_insensitive: true
--           rejected_code: 404
--
-- The subject is the normalized path (dot-segments removed, escapes of unreserved characters
-- decoded, so "/%77p-admin" is "/wp-admin") followed by "?" and the query as sent when there is
-- one. The expressions are PCRE2 (turnpike.regex), compiled once per conf into one alternation,
-- so a request costs one match whatever the number of rules.
local turnpike = require "turnpike"
local json = require "turnpike.json"
local regex = require "turnpike.regex"

local format, concat = string.format, table.concat
local request = turnpike.request

local JSON = { ["content-type"] = "application/json" }

-- Each rule alone, to name the one that does not compile.
local function check_rules(conf)
  local flags = conf.case_insensitive and "i" or ""
  for i, rule in ipairs(conf.block_rules) do
    local re, err = regex.compile(rule, flags)
    if not re then return false, format("conf.block_rules[%d]: invalid regular expression: %s", i, err) end
  end
  return true
end

-- conf → { re = one alternation of the rules, body = denial body } (weak keys).
local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = compiled[conf]
  if c then return c end
  local flags = conf.case_insensitive and "i" or ""
  local groups = {}
  for i, rule in ipairs(conf.block_rules) do groups[i] = "(?:" .. rule .. ")" end
  -- Back-references would point at other groups in the alternation, and group names may repeat
  -- across rules: such lists keep one expression per rule.
  local re = nil
  if not concat(conf.block_rules, "\n"):find("\\[1-9gk]") then
    re = regex.compile(concat(groups, "|"), flags)
  end
  local each = {}
  if not re then
    for i, rule in ipairs(conf.block_rules) do each[i] = assert(regex.compile(rule, flags)) end
  end
  c = { re = re, each = each, body = json.encode({ error = "forbidden", message = conf.rejected_msg }) }
  compiled[conf] = c
  return c
end

local function blocked(c, uri)
  if c.re then
    local from, err = c.re:find(uri)
    return from ~= nil or err ~= nil  -- a rule too costly to evaluate blocks (fails closed)
  end
  for i = 1, #c.each do
    local from, err = c.each[i]:find(uri)
    if from or err then return true end
  end
  return false
end

return {
  name = "uri-blocker",
  version = "1.0",
  priority = 2900,

  schema = {
    type = "object",
    additionalProperties = false,
    required = { "block_rules" },
    properties = {
      block_rules = { type = "array", minItems = 1, items = { type = "string", minLength = 1 } },
      rejected_code = { type = "integer", minimum = 200, maximum = 599, default = 403 },
      rejected_msg = { type = "string", minLength = 1, maxLength = 1024,
                       default = "access to this URI is blocked" },
      case_insensitive = { type = "boolean", default = false },
    },
  },

  check_schema = check_rules,

  rewrite = function(conf)
    local c = compile(conf)
    local path, query = request.get_path(), request.get_query()
    local uri = query and (path .. "?" .. query) or path
    if blocked(c, uri) then return turnpike.exit(conf.rejected_code, c.body, JSON) end
  end,
}
