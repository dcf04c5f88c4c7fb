-- ip-restriction: lets a request through, or not, by the client's address: a whitelist (only
-- these), or a blacklist (all but these), of IPv4 and IPv6 addresses and CIDR blocks.
--
--   routes:
--     - name: admin
--       plugins:
--         ip-restriction:
--           whitelist: [10.0.0.0/8, 192.168.1.17, "2001:db8::/32"]
--           message: "admins only"
--
-- The list is parsed once per conf into a turnpike.ipset: one hash set of network keys per prefix
-- length, so a lookup probes only the prefix lengths the list has (at most 33 for IPv4, 129 for
-- IPv6) whatever the number of entries. An IPv4-mapped IPv6 client (::ffff:10.1.2.3) is checked
-- as its IPv4 address. The client address is the connection's peer (turnpike.request.get_client_ip).
local turnpike = require "turnpike"
local json = require "turnpike.json"
local ipset = require "turnpike.ipset"

local format = string.format
local request = turnpike.request

local JSON = { ["content-type"] = "application/json" }

local parse_entry, build_set, contains = ipset.parse, ipset.new, ipset.contains

-- conf → { set = ..., allow = boolean, body = denial body }; weak keys: a conf replaced by a
-- reload takes its set with it.
local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = compiled[conf]
  if c then return c end
  c = {
    allow = conf.whitelist ~= nil,
    set = build_set(conf.whitelist or conf.blacklist),
    body = json.encode({ error = "forbidden", message = conf.message }),
  }
  compiled[conf] = c
  return c
end

local function check_list(conf, field)
  for i, entry in ipairs(conf[field]) do
    local family, why = parse_entry(entry)
    if not family then
      return false, format("conf.%s[%d]: %s: %s", field, i, json.encode(entry), why)
    end
  end
  return true
end

local list = { type = "array", minItems = 1, items = { type = "string", minLength = 1 } }

return {
  name = "ip-restriction",
  version = "1.0",
  priority = 3000,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      -- Only these addresses and networks get through.
      whitelist = list,
      -- These do not; everyone else does.
      blacklist = list,
      message = { type = "string", default = "Your IP address is not allowed", minLength = 1,
                  maxLength = 1024 },
    },
  },

  check_schema = function(conf)
    if (conf.whitelist == nil) == (conf.blacklist == nil) then
      return false, "conf: give exactly one of whitelist and blacklist"
    end
    return check_list(conf, conf.whitelist and "whitelist" or "blacklist")
  end,

  access = function(conf)
    local c = compile(conf)
    local ip = request.get_client_ip()
    if ip and contains(c.set, ip) == c.allow then return end
    return turnpike.exit(403, c.body, JSON)
  end,
}
