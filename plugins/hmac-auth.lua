-- hmac-auth: a client proves who it is by signing the request with a secret it shares with the
-- gateway (HTTP Signatures, draft-cavage-http-signatures-12, with "@request-target"):
--
--   Authorization: Signature keyId="alice-key",algorithm="hmac-sha256",
--                  headers="@request-target date x-custom",signature="<base64>"
--
-- The signature is the HMAC of one line per listed header, "name: value" joined by "\n", where
-- "@request-target" is the lower-case method, a space, and the request target (path?query) as
-- sent. The signed headers must include @request-target and Date (or X-Date), which must be
-- within `clock_skew` seconds of the gateway's clock; with `replay_dict`, a signature is
-- accepted once. keyId names the consumer (consumers[].plugins.hmac-auth.key_id), which is
-- attached to the request.
--
--   shared_dicts: { hmac-replay: 10m }
--   routes:
--     - name: api
--       plugins:
--         hmac-auth: { clock_skew: 300, replay_dict: hmac-replay, signed_headers: [x-custom] }
--   consumers:
--     - username: alice
--       plugins:
--         hmac-auth: { key_id: alice-key, secret_key: "at least sixteen bytes" }
local turnpike = require "turnpike"
local crypto = require "turnpike.crypto"
local base64 = require "turnpike.base64"
local json = require "turnpike.json"

local request, consumer = turnpike.request, turnpike.consumer
local concat, lower, time = table.concat, string.lower, os.time

local ALGORITHMS = { ["hmac-sha256"] = "sha256", ["hmac-sha384"] = "sha384",
                     ["hmac-sha512"] = "sha512" }
local TARGET = "@request-target"
-- RFC 3230 §4.3.2 instance digests: algorithm → digest size in bytes.
local DIGESTS = { ["sha-256"] = 32, ["sha-512"] = 64 }

local function deny(message)
  return turnpike.exit(401, json.encode({ error = "unauthorized", message = message }), {
    ["content-type"] = "application/json",
    ["www-authenticate"] = 'Signature headers="@request-target date"',
  })
end

-- The parameters of a Signature authorization (keyId="...",algorithm="...",...), or nil when
-- it is not one.
local function parse_authorization(header)
  local rest = header:match("^[Ss][Ii][Gg][Nn][Aa][Tt][Uu][Rr][Ee] +(.+)$")
  if not rest then return nil end
  local params, pos = {}, 1
  while pos <= #rest do
    local name, value, after = rest:match('^%s*([%a]+)="([^"]*)"%s*()', pos)
    if not name then return nil end
    params[name] = value
    pos = after
    if rest:sub(pos, pos) == "," then pos = pos + 1 elseif pos <= #rest then return nil end
  end
  return params
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9,
                 Oct = 10, Nov = 11, Dec = 12 }

-- Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- Seconds since the epoch of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110
-- §5.6.7), or nil.
local function parse_http_date(s)
  local d, mon, y, hh, mm, ss =
    s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  local m = MONTHS[mon]
  if not m then return nil end
  return days_from_civil(tonumber(y), m, tonumber(d)) * 86400 + tonumber(hh) * 3600 +
         tonumber(mm) * 60 + tonumber(ss)
end

-- The header names of `headers="..."`, lower-cased, and a set of them.
local function signed_names(list)
  local names, set = {}, {}
  for name in list:gmatch("%S+") do
    name = lower(name)
    names[#names + 1], set[name] = name, true
  end
  return names, set
end

-- Why the signed set is not enough for this route, or nil.
local function missing_from(conf, set)
  if not set[TARGET] then return TARGET end
  if not set["date"] and not set["x-date"] then return "date" end
  for _, name in ipairs(conf.signed_headers) do
    if not set[lower(name)] then return lower(name) end
  end
  if conf.require_digest and not set["digest"] then return "digest" end
end

-- The string the client signed, or nil and the header it lists but did not send.
local function signing_string(names)
  local lines = {}
  for i, name in ipairs(names) do
    local value
    if name == TARGET then
      value = lower(request.get_method()) .. " " .. request.get_uri()
    else
      value = request.get_header(name)
      if not value then return nil, name end
    end
    lines[i] = name .. ": " .. value
  end
  return concat(lines, "\n")
end

-- Whether a Digest header is "SHA-256=<base64 of 32 bytes>" (or SHA-512) and matches the body,
-- which is read ahead for this (at most max_body bytes: a longer body fails the check). nil and
-- why otherwise.
local function digest_matches(value, max_body)
  local alg, encoded = value:match("^%s*([%w%-]+)=(%S+)%s*$")
  local size = alg and DIGESTS[lower(alg)]
  local raw = size and base64.decode(encoded)
  if raw == nil or #raw ~= size then return nil, "invalid digest header" end
  local body, whole = request.read_body(max_body)
  if body == nil then return nil, "the request body could not be read" end
  if not whole or #body > max_body then return nil, "request body too large to verify its digest" end
  local hash = size == 32 and crypto.sha256 or crypto.sha512
  if not crypto.equal(hash(body), raw) then return nil, "digest does not match the body" end
  return true
end

return {
  name = "hmac-auth",
  version = "1.0",
  priority = 2530,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      -- How far (seconds) Date / X-Date may be from the gateway's clock, either way.
      clock_skew = { type = "integer", default = 300, minimum = 1, maximum = 3600 },
      -- Algorithms clients may use.
      algorithms = { type = "array", minItems = 1, default = { "hmac-sha256", "hmac-sha512" },
                     items = { type = "string", enum = { "hmac-sha256", "hmac-sha384",
                                                         "hmac-sha512" } } },
      -- Headers that must be signed besides @request-target and the date.
      signed_headers = { type = "array", default = {},
                         items = { type = "string", minLength = 1, pattern = "^[A-Za-z0-9-]+$" } },
      -- Require a signed Digest header (RFC 3230) that matches the body: the body is read ahead
      -- (at most max_body bytes; a longer one is refused) and hashed.
      require_digest = { type = "boolean", default = false },
      max_body = { type = "integer", minimum = 0, default = 1048576 },
      -- A shared_dicts entry remembering accepted signatures for 2 × clock_skew: a signature
      -- seen before is refused (replay). Without it, a captured request can be replayed until
      -- its date leaves the clock skew.
      replay_dict = { type = "string", minLength = 1 },
      -- Remove the Authorization header before the request goes upstream.
      hide_credentials = { type = "boolean", default = false },
    },
  },

  consumer_schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      key_id = { type = "string", minLength = 1 },
      -- RFC 2104 §3: keys shorter than the hash output weaken the MAC; 16 bytes is the floor.
      secret_key = { type = "string", minLength = 16 },
    },
    required = { "key_id", "secret_key" },
  },

  access = function(conf, ctx)
    local header = request.get_header("authorization")
    if not header then return deny("missing signature") end
    local p = parse_authorization(header)
    if not p or not p.keyId or not p.algorithm or not p.headers or not p.signature then
      return deny("malformed signature: expected keyId, algorithm, headers and signature")
    end

    local digest_alg = ALGORITHMS[p.algorithm]
    local allowed = false
    for _, alg in ipairs(conf.algorithms) do allowed = allowed or alg == p.algorithm end
    if not allowed then return deny("algorithm not allowed") end

    local names, set = signed_names(p.headers)
    local unsigned = missing_from(conf, set)
    if unsigned then return deny("header not signed: " .. unsigned) end

    local who, cred = consumer.find(ctx, "hmac-auth", "key_id", p.keyId)
    if not who then return deny("unknown key id") end

    local date_header = set["x-date"] and "x-date" or "date"
    local date = parse_http_date(request.get_header(date_header) or "")
    if not date then return deny("missing or invalid " .. date_header .. " header") end
    if math.abs(time() - date) > conf.clock_skew then
      return deny(date_header .. " is outside the allowed clock skew")
    end

    local text, absent = signing_string(names)
    if not text then return deny("signed header missing: " .. absent) end
    local signature = base64.decode(p.signature)
    if not signature or not crypto.equal(crypto.hmac(digest_alg, cred.secret_key, text), signature) then
      return deny("invalid signature")
    end
    if conf.require_digest then
      local ok, why = digest_matches(request.get_header("digest") or "", conf.max_body)
      if not ok then return deny(why) end
    end

    if conf.replay_dict then
      local seen = turnpike.shared[conf.replay_dict]
      if not seen then
        turnpike.log.error("hmac-auth: no shared dictionary named ", conf.replay_dict)
        return turnpike.exit(500, '{"error":"misconfigured","message":"replay dictionary missing"}',
                             { ["content-type"] = "application/json" })
      end
      -- Only verified signatures are stored, so forged requests cannot fill the dictionary.
      local ok, err = seen:add("hmac-auth:" .. signature, true, 2 * conf.clock_skew)
      if not ok and err == "exists" then return deny("replayed request") end
    end

    consumer.attach(ctx, who)
    if conf.hide_credentials then request.set_header("authorization", nil) end
  end,
}
