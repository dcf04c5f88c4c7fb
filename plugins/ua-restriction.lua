-- ua-restriction: lets a request through, or not, by its User-Agent: an allowlist (only agents
-- matching one of these regular expressions) and/or a denylist (no agent matching one of these).
--
--   routes:
--     - name: api
--       plugins:
--         ua-restriction:
--           denylist: ["(?i)bot", "^curl/"]
--           message: "automated clients are not welcome"
--
-- With both lists, an agent on the allowlist gets through even if it is on the denylist too. A
-- request without User-Agent is refused unless bypass_missing is true. The expressions are PCRE2
-- (turnpike.regex), compiled once per conf.
local turnpike = require "turnpike"
local json = require "turnpike.json"
local regex = require "turnpike.regex"

local format = string.format

local JSON = { ["content-type"] = "application/json" }

-- The list's compiled expressions, or nil and the first error (conf.<field>[i]: ...).
local function compile_list(conf, field)
  local out = {}
  for i, pattern in ipairs(conf[field] or {}) do
    local re, err = regex.compile(pattern)
    if not re then return nil, format("conf.%s[%d]: invalid regular expression: %s", field, i, err) end
    out[i] = re
  end
  return out
end

-- Whether one of `list` matches; an expression that hits PCRE2's match limit counts as
-- `on_error` (the denylist fails closed, the allowlist does not admit).
local function any_matches(list, subject, on_error)
  for i = 1, #list do
    local from, err = list[i]:find(subject)
    if from then return true end
    if err and on_error then return true end
  end
  return false
end

-- conf → { allow = {...}, deny = {...}, body = denial body } (weak keys: dies with the conf).
local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = compiled[conf]
  if c then return c end
  c = {
    allow = assert(compile_list(conf, "allowlist")),
    deny = assert(compile_list(conf, "denylist")),
    body = json.encode({ error = "forbidden", message = conf.message }),
  }
  compiled[conf] = c
  return c
end

local list = { type = "array", minItems = 1, items = { type = "string", minLength = 1 } }

return {
  name = "ua-restriction",
  version = "1.0",
  priority = 2999,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      allowlist = list,
      denylist = list,
      -- Let requests without a User-Agent through (they are refused otherwise).
      bypass_missing = { type = "boolean", default = false },
      message = { type = "string", default = "Not allowed", minLength = 1, maxLength = 1024 },
    },
  },

  check_schema = function(conf)
    if conf.allowlist == nil and conf.denylist == nil then
      return false, "conf: give allowlist, denylist or both"
    end
    for _, field in ipairs({ "allowlist", "denylist" }) do
      local ok, err = compile_list(conf, field)
      if not ok then return false, err end
    end
    return true
  end,

  access = function(conf)
    local c = compile(conf)
    local agent = turnpike.request.get_header("user-agent")
    if agent == nil then
      if conf.bypass_missing then return end
      return turnpike.exit(403, c.body, JSON)
    end
    if #c.allow > 0 then
      if any_matches(c.allow, agent, false) then return end
      -- An allowlist alone admits only its agents; with a denylist, others fall through to it.
      if #c.deny == 0 then return turnpike.exit(403, c.body, JSON) end
    end
    if any_matches(c.deny, agent, true) then return turnpike.exit(403, c.body, JSON) end
  end,
}
