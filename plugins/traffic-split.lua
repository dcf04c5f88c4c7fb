-- traffic-split: gray release. Sends some requests to another upstream (or to the canary nodes of
-- the route's own upstream): by rules on the request, and by a sticky percentage of users.
--
--   plugins:
--     traffic-split:
--       rules:                                   # the first rule that matches decides
--         - match: [{header: x-beta, value: "1"}]   # every condition must hold
--           upstreams: [{upstream: canary, canary: true}]
--         - split:                               # 10% of users, always the same ones
--             key: {header: x-user-id}
--             percentage: 10
--             canary_upstream: canary            # absent: the route's upstream, canary nodes
--       gray: {header: x-gray, value: canary}   # the tag of gray traffic (these are the defaults)
--
-- Sticky percentages: the key (a header, cookie, query argument, the consumer or the client
-- address) is hashed (turnpike.hash, Murmur3) into 10,000 buckets and the buckets below
-- percentage x 100 go to the canary, so raising the percentage only adds users to the canary.
--
-- Full-link gray: a request sent to the canary gets the tag header (x-gray: canary) for the
-- services behind to pass on, and the tag as its node tag: it prefers the upstream's nodes tagged
-- `canary` (`nodes: [{host: ..., tags: [canary]}]`), then untagged ones. A request that arrives
-- with the tag is gray already: it goes to the canary (gray.honour) and keeps the header.
local turnpike = require "turnpike"
local hash = require "turnpike.hash"
local ipset = require "turnpike.ipset"
local json = require "turnpike.json"
local metrics = require "turnpike.metrics"

local request, upstream = turnpike.request, turnpike.upstream
local type, ipairs, floor = type, ipairs, math.floor
local find, gmatch, match, format = string.find, string.gmatch, string.match, string.format

local BUCKETS = 10000
-- On /metrics: turnpike_plugin_traffic_split_requests_total{route, target}: where the plugin sent
-- requests (target: the upstream it chose, "(route)" for the route's own; canary or stable).
local sent = metrics.counter("traffic_split_requests_total", "Requests traffic-split routed, by route, target and group.",
                             { "route", "target", "group" })

-- ---- reading the request ----------------------------------------------------------------------

local function cookie(name)
  local all = request.get_header("cookie")
  if not all or not find(all, name, 1, true) then return nil end
  for pair in gmatch(all, "[^;]+") do
    local k, v = match(pair, "^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k == name then return v end
  end
  return nil
end

local function query_arg(name)
  local v = request.get_uri_args()[name]
  if type(v) == "table" then v = v[1] end
  if v == true then return "" end
  return v
end

-- The value a condition or a split key reads; nil when the request does not have it.
local function read(spec, ctx)
  if spec.header then return request.get_header(spec.header) end
  if spec.cookie then return cookie(spec.cookie) end
  if spec.query then return query_arg(spec.query) end
  if spec.consumer or spec.consumers then return ctx.consumer_name end
  return request.get_client_ip()
end

-- ---- the conf, prepared once per worker -------------------------------------------------------

local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = compiled[conf]
  if c then return c end
  c = { rules = {}, gray = conf.gray }
  for _, rule in ipairs(conf.rules or {}) do
    local r = { conditions = {} }
    for _, cond in ipairs(rule.match or {}) do
      local cc = { header = cond.header, cookie = cond.cookie, query = cond.query, value = cond.value }
      if cond.consumers then
        cc.consumers = {}
        for _, name in ipairs(cond.consumers) do cc.consumers[name] = true end
      end
      if cond.cidrs then cc.cidrs = ipset.new(cond.cidrs) end
      r.conditions[#r.conditions + 1] = cc
    end
    if rule.split then
      local s = rule.split
      r.split = {
        key = s.key,
        threshold = floor(s.percentage * BUCKETS / 100 + 0.5),
        canary = { upstream = s.canary_upstream, canary = true },
        stable = { upstream = s.stable_upstream, canary = false },
        missing = s.missing,
      }
    else
      -- Smooth weighted round-robin over the choices (per worker): weights 3:1 give a a b a ...
      r.choices = {}
      for _, ch in ipairs(rule.upstreams) do
        if ch.weight > 0 then
          r.choices[#r.choices + 1] = { upstream = ch.upstream, canary = ch.canary, weight = ch.weight, current = 0 }
        end
      end
    end
    c.rules[#c.rules + 1] = r
  end
  c.honoured = { upstream = conf.gray.canary_upstream, canary = true }
  compiled[conf] = c
  return c
end

-- ---- deciding ---------------------------------------------------------------------------------

local function holds(cond, ctx)
  if cond.cidrs then
    local ip = request.get_client_ip()
    return ip ~= nil and ipset.contains(cond.cidrs, ip)
  end
  local v = read(cond, ctx)
  if cond.consumers then return v ~= nil and cond.consumers[v] == true end
  if v == nil then return false end
  return cond.value == nil or v == cond.value
end

local function matches(r, ctx)
  local conds = r.conditions
  for i = 1, #conds do
    if not holds(conds[i], ctx) then return false end
  end
  return true
end

local function weighted(choices)
  local total, best = 0, nil
  for i = 1, #choices do
    local ch = choices[i]
    ch.current = ch.current + ch.weight
    total = total + ch.weight
    if not best or ch.current > best.current then best = ch end
  end
  best.current = best.current - total
  return best
end

local function split(s, ctx)
  local key = read(s.key, ctx)
  if key == nil or key == "" then return s.missing == "canary" and s.canary or s.stable end
  return hash.bucket(key, BUCKETS) < s.threshold and s.canary or s.stable
end

-- Sends the request where `target` says: its upstream (nil: the route's), and for the canary the
-- gray tag, as a header for the services behind and as the node tag.
local function route_to(gray, target)
  sent:inc(1, { request.get_route() or "-", target.upstream or "(route)", target.canary and "canary" or "stable" })
  if target.upstream and not upstream.set(target.upstream) then
    turnpike.log.warn("traffic-split: no upstream named ", target.upstream, "; keeping the route's")
  end
  if target.canary then
    upstream.set_tag(gray.value)
    request.set_header(gray.header, gray.value)
  end
end

-- ---- checks the schema cannot express ---------------------------------------------------------

local KINDS = { "header", "cookie", "query", "consumers", "cidrs" }
local KEY_KINDS = { "header", "cookie", "query", "consumer", "client_ip" }

local function exactly_one(t, kinds, path)
  local found
  for _, k in ipairs(kinds) do
    if t[k] ~= nil and t[k] ~= false then
      if found then return false, format("%s: give only one of %s and %s", path, found, k) end
      found = k
    end
  end
  if not found then return false, path .. ": give one of " .. table.concat(kinds, ", ") end
  return true, found
end

local function check_rule(rule, path)
  for j, cond in ipairs(rule.match or {}) do
    local cpath = format("%s.match[%d]", path, j)
    local ok, kind = exactly_one(cond, KINDS, cpath)
    if not ok then return false, kind end
    if cond.value ~= nil and (kind == "consumers" or kind == "cidrs") then
      return false, cpath .. ".value: only with header, cookie or query"
    end
    for k, entry in ipairs(cond.cidrs or {}) do
      local family, why = ipset.parse(entry)
      if not family then return false, format("%s.cidrs[%d]: %s: %s", cpath, k, json.encode(entry), why) end
    end
  end
  if (rule.upstreams == nil) == (rule.split == nil) then
    return false, path .. ": give exactly one of upstreams and split"
  end
  if rule.upstreams then
    local total = 0
    for _, ch in ipairs(rule.upstreams) do total = total + ch.weight end
    if total == 0 then return false, path .. ".upstreams: the weights add up to 0" end
  else
    local ok, why = exactly_one(rule.split.key, KEY_KINDS, path .. ".split.key")
    if not ok then return false, why end
    local p = rule.split.percentage * 100
    if p ~= floor(p) then return false, path .. ".split.percentage: at most two decimals (10,000 buckets)" end
  end
  return true
end

-- ---- the schema -------------------------------------------------------------------------------

local name = { type = "string", minLength = 1 }
local TOKEN = "^[!#$%%&'*+.^_`|~0-9A-Za-z-]+$"

local condition = {
  type = "object",
  additionalProperties = false,
  properties = {
    header = name, cookie = name, query = name,
    value = { type = "string" },   -- absent: the header, cookie or argument is there at all
    consumers = { type = "array", minItems = 1, items = name },
    cidrs = { type = "array", minItems = 1, items = name },
  },
}

local choice = {
  type = "object",
  additionalProperties = false,
  properties = {
    upstream = name,   -- absent: the route's upstream
    weight = { type = "integer", minimum = 0, maximum = 10000, default = 1 },
    canary = { type = "boolean", default = false },  -- tag it as gray traffic
  },
}

local split_schema = {
  type = "object",
  additionalProperties = false,
  required = { "key", "percentage" },
  properties = {
    key = {
      type = "object",
      additionalProperties = false,
      properties = {
        header = name, cookie = name, query = name,
        consumer = { type = "boolean" }, client_ip = { type = "boolean" },
      },
    },
    percentage = { type = "number", minimum = 0, maximum = 100 },
    canary_upstream = name,  -- absent: the route's upstream (its canary-tagged nodes)
    stable_upstream = name,  -- absent: the route's upstream
    -- Where requests without the key go.
    missing = { type = "string", enum = { "stable", "canary" }, default = "stable" },
  },
}

return {
  name = "traffic-split",
  version = "1.0",
  priority = 966,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      rules = {
        type = "array",
        items = {
          type = "object",
          additionalProperties = false,
          properties = {
            match = { type = "array", items = condition },
            upstreams = { type = "array", minItems = 1, maxItems = 64, items = choice },
            split = split_schema,
          },
        },
      },
      gray = {
        type = "object",
        additionalProperties = false,
        default = {},
        properties = {
          header = { type = "string", pattern = TOKEN, default = "x-gray" },
          -- The header's value, and the node tag canary requests prefer.
          value = { type = "string", pattern = "^[A-Za-z0-9._-]+$", maxLength = 64, default = "canary" },
          -- A request that arrives with the tag goes to the canary.
          honour = { type = "boolean", default = true },
          canary_upstream = name,  -- where honoured requests go (absent: the route's upstream)
        },
      },
    },
  },

  check_schema = function(conf)
    for i, rule in ipairs(conf.rules or {}) do
      local ok, why = check_rule(rule, format("conf.rules[%d]", i))
      if not ok then return false, why end
    end
    return true
  end,

  access = function(conf, ctx)
    local c = compile(conf)
    local gray = c.gray
    if gray.honour and request.get_header(gray.header) == gray.value then
      return route_to(gray, c.honoured)
    end
    local rules = c.rules
    for i = 1, #rules do
      local r = rules[i]
      if matches(r, ctx) then
        return route_to(gray, r.split and split(r.split, ctx) or weighted(r.choices))
      end
    end
  end,
}
