-- jwt-auth: a client proves who it is with a signed JSON Web Token (RFC 7519), sent as
-- "Authorization: Bearer <token>", or in a query argument or cookie. The token names its
-- consumer by the JWS header's `kid` or by a claim (`key_claim`, default "key"), which must equal
-- the consumer's jwt-auth `key`; it must be signed with that consumer's algorithm and secret or
-- public key, and be inside its exp/nbf window (give or take `clock_skew` seconds). The consumer
-- is attached to the request and chosen claims can be passed upstream as headers.
--
--   routes:
--     - name: api
--       plugins:
--         jwt-auth:
--           clock_skew: 30
--           required_claims: [exp, sub]
--           claims_to_headers: { sub: X-User-Id }
--   consumers:
--     - username: alice
--       plugins:
--         jwt-auth: { key: alice, algorithm: HS256, secret: "a secret of at least 32 bytes....." }
--     - username: mobile
--       plugins:
--         jwt-auth:
--           key: mobile-2024
--           algorithm: ES256
--           public_key: |
--             -----BEGIN PUBLIC KEY-----
--             ...
local turnpike = require "turnpike"
local crypto = require "turnpike.crypto"
local base64 = require "turnpike.base64"
local json = require "turnpike.json"

local request, consumer = turnpike.request, turnpike.consumer
local find, sub, type, tostring, time = string.find, string.sub, type, tostring, os.time

local HMAC = { HS256 = "sha256", HS384 = "sha384", HS512 = "sha512" }
local ALGORITHMS = { "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384",
                     "PS512", "ES256", "ES384", "ES512", "EdDSA" }
local HEADER_NAME = "^[%w!#$%%&'*+%-.^_`|~]+$"  -- an RFC 9110 token, as a Lua pattern
local HEADER_NAME_RE = [[^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$]]  -- the same for the schema (a regex)

-- consumer conf → { hmac = digest, secret = bytes } or { key = crypto key }: the verifier made
-- once per conf table (parsing a PEM key costs far more than a verify); weak keys, so the
-- entries of a replaced config go with it.
local verifiers = setmetatable({}, { __mode = "k" })

-- The verifier for a consumer's conf, or nil and why the conf is unusable.
local function make_verifier(conf)
  local digest = HMAC[conf.algorithm]
  if digest then
    if not conf.secret then return nil, "conf.secret: required for " .. conf.algorithm end
    local secret = conf.secret
    if conf.base64_secret then
      secret = base64.decode(secret)
      if not secret then return nil, "conf.secret: not valid base64 (base64_secret is true)" end
    end
    -- RFC 7518 §3.2: the key must be at least as long as the hash output.
    local min = #crypto[digest]("")
    if #secret < min then
      return nil, "conf.secret: " .. conf.algorithm .. " needs a secret of at least " .. min ..
                  " bytes, got " .. #secret
    end
    return { hmac = digest, secret = secret }
  end
  if not conf.public_key then return nil, "conf.public_key: required for " .. conf.algorithm end
  local key, err = crypto.public_key(conf.public_key)
  if not key then return nil, "conf.public_key: " .. err end
  -- A verify of nothing tells whether the key fits the algorithm (an RSA key for ES256, a
  -- P-384 key for ES256, RSA under 2048 bits): nil and why when it does not.
  local fits, why = crypto.verify(conf.algorithm, key, "", "")
  if fits == nil then return nil, "conf.public_key: " .. why end
  return { key = key }
end

local function verifier_of(conf)
  local v = verifiers[conf]
  if not v then
    v = assert(make_verifier(conf))
    verifiers[conf] = v
  end
  return v
end

local function deny(message)
  return turnpike.exit(401, json.encode({ error = "unauthorized", message = message }), {
    ["content-type"] = "application/json",
    -- RFC 6750 §3: the challenge of a bearer-token resource.
    ["www-authenticate"] = 'Bearer error="invalid_token"',
  })
end

-- The value of cookie `name` in a Cookie header (RFC 6265 §5.4: "a=1; b=2"), or nil.
local function cookie_value(cookies, name)
  for pair in cookies:gmatch("[^;]+") do
    local k, v = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if k == name then return v end
  end
end

-- Where the token was found ("header", "query", "cookie") and the token; nil when absent.
local function find_token(conf)
  local value = request.get_header(conf.header)
  if value then
    local bearer = value:match("^[Bb][Ee][Aa][Rr][Ee][Rr] +(%S+) *$")
    if bearer then return "header", bearer end
    -- Authorization with another scheme belongs to another plugin; a custom header may carry
    -- the bare token.
    if conf.header:lower() ~= "authorization" and value ~= "" then return "header", value end
  end
  if conf.query then
    local arg = request.get_uri_args()[conf.query]
    if type(arg) == "string" and arg ~= "" then return "query", arg end
  end
  if conf.cookie then
    local cookies = request.get_header("cookie")
    local v = cookies and cookie_value(cookies, conf.cookie)
    if v and v ~= "" then return "cookie", v end
  end
end

local function decode_json_segment(segment)
  local text = base64.decode_url(segment)
  if not text then return nil end
  local value = json.decode(text)
  if type(value) ~= "table" or getmetatable(value) then return nil end  -- not an object
  return value
end

-- The JWS compact serialization (RFC 7515 §7.1): header, claims, signature and the signing
-- input; nil when it is not three well-formed segments.
local function parse(token)
  local dot1 = find(token, ".", 1, true)
  local dot2 = dot1 and find(token, ".", dot1 + 1, true)
  if not dot2 or find(token, ".", dot2 + 1, true) then return nil end
  local header = decode_json_segment(sub(token, 1, dot1 - 1))
  local claims = decode_json_segment(sub(token, dot1 + 1, dot2 - 1))
  local signature = base64.decode_url(sub(token, dot2 + 1))
  if not header or not claims or not signature or type(header.alg) ~= "string" then return nil end
  return header, claims, signature, sub(token, 1, dot2 - 1)
end

local function signature_ok(verifier, alg, input, signature)
  if verifier.hmac then
    return crypto.equal(crypto.hmac(verifier.hmac, verifier.secret, input), signature)
  end
  return crypto.verify(alg, verifier.key, input, signature) == true
end

-- Why the claims are not acceptable now, or nil (RFC 7519 §4.1.4, §4.1.5).
local function time_problem(conf, claims)
  local now, exp, nbf = time(), claims.exp, claims.nbf
  if exp ~= nil then
    if type(exp) ~= "number" then return "malformed token: exp is not a number" end
    if now >= exp + conf.clock_skew then return "token expired" end
  end
  if nbf ~= nil then
    if type(nbf) ~= "number" then return "malformed token: nbf is not a number" end
    if now + conf.clock_skew < nbf then return "token not yet valid" end
  end
end

-- The consumer, its conf and the claims of a token whose signature verifies; nil and why not.
local function verify(conf, ctx, token)
  local header, claims, signature, input = parse(token)
  if not header then return nil, "malformed token" end
  -- RFC 7515 §4.1.11: extensions marked critical must be understood; this plugin knows none.
  if header.crit ~= nil then return nil, "unsupported critical header parameters (crit)" end

  local key = header.kid
  if key == nil then key = claims[conf.key_claim] end
  if type(key) ~= "string" then
    return nil, "the token names no key (kid header or " .. conf.key_claim .. " claim)"
  end
  local who, cred = consumer.find(ctx, "jwt-auth", "key", key)
  if not who then return nil, "unknown key" end

  -- Only the consumer's own algorithm: refuses "none" and HS256 signed with an RSA public key.
  if header.alg ~= cred.algorithm then return nil, "algorithm not allowed for this key" end
  if not signature_ok(verifier_of(cred), header.alg, input, signature) then
    return nil, "invalid signature"
  end
  return who, cred, claims
end

-- Tokens whose signature verified, per worker: token → { route conf, consumer, its conf,
-- claims }. Clients send the same token for many requests, and an RS256 verify costs ~20 µs,
-- an ES256 one ~50 µs (docs/plugins-auth.md). Safe to reuse: the token's bytes fix its claims
-- and key, and an entry serves only the route conf table it was verified under, which lives as
-- long as one config (a reload checks every conf afresh into new tables, so a changed or removed
-- consumer is never served from here). Only verified tokens get in, so forged ones cannot crowd
-- it; when full it is emptied, which bounds it to about MAX_REMEMBERED × MAX_TOKEN_SIZE bytes.
-- exp and nbf are checked on every use.
local MAX_REMEMBERED, MAX_TOKEN_SIZE = 1000, 2048
local remembered_tokens, remembered_count = {}, 0

local function remembered(conf, token)
  local hit = remembered_tokens[token]
  if hit and hit[1] == conf then return hit[2], hit[3], hit[4] end
end

local function remember(conf, token, who, cred, claims)
  if #token > MAX_TOKEN_SIZE then return end
  if remembered_count >= MAX_REMEMBERED then remembered_tokens, remembered_count = {}, 0 end
  if not remembered_tokens[token] then remembered_count = remembered_count + 1 end
  remembered_tokens[token] = { conf, who, cred, claims }
end

local function header_value(claim)
  local t = type(claim)
  if t == "string" then return claim end
  if t == "number" or t == "boolean" then return tostring(claim) end
  if t == "table" and claim ~= json.null then return json.encode(claim) end
end

local function hide(conf, where)
  if where == "header" then
    request.set_header(conf.header, nil)
  elseif where == "query" then
    local args = request.get_uri_args()
    args[conf.query] = nil
    request.set_uri_args(args)
  else
    local kept = {}
    for pair in request.get_header("cookie"):gmatch("[^;]+") do
      local name = pair:match("^%s*([^=]-)%s*=")
      if name ~= conf.cookie then kept[#kept + 1] = pair:match("^%s*(.-)%s*$") end
    end
    request.set_header("cookie", #kept > 0 and table.concat(kept, "; ") or nil)
  end
end

return {
  name = "jwt-auth",
  version = "1.0",
  priority = 2510,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      -- Where the token is looked for, in this order. In Authorization it must be a Bearer
      -- token; another header may carry it bare.
      header = { type = "string", default = "authorization", minLength = 1, pattern = HEADER_NAME_RE },
      query = { type = "string", minLength = 1 },
      cookie = { type = "string", minLength = 1 },
      -- The claim naming the consumer's key when the token has no `kid` ("iss" is common).
      key_claim = { type = "string", default = "key", minLength = 1 },
      -- Seconds of leeway for exp and nbf: clocks of issuers and gateway differ a little.
      clock_skew = { type = "integer", default = 0, minimum = 0, maximum = 300 },
      -- Claims the token must have, e.g. [exp] to refuse tokens that never expire.
      required_claims = { type = "array", default = {}, items = { type = "string", minLength = 1 } },
      -- claim → upstream header. The header is always replaced (removed when the token lacks
      -- the claim), so a client cannot send it itself.
      claims_to_headers = { type = "object", default = {} },
      -- Remove the token (header, query argument or cookie) before the request goes upstream.
      hide_credentials = { type = "boolean", default = false },
    },
  },

  consumer_schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      -- Matched against the token's kid header or key_claim claim.
      key = { type = "string", minLength = 1 },
      algorithm = { type = "string", default = "HS256", enum = ALGORITHMS },
      secret = { type = "string", minLength = 1 },          -- HS*
      base64_secret = { type = "boolean", default = false },
      public_key = { type = "string", minLength = 1 },      -- RS*, PS*, ES*, EdDSA: PEM
    },
    required = { "key" },
  },

  check_schema = function(conf, kind)
    if kind == "consumer" then
      local v, err = make_verifier(conf)
      if not v then return false, err end
      verifiers[conf] = v
      return true
    end
    for claim, header in pairs(conf.claims_to_headers) do
      if type(claim) ~= "string" or type(header) ~= "string" or not header:find(HEADER_NAME) then
        return false, "conf.claims_to_headers." .. tostring(claim) .. ": expected a header name"
      end
    end
    return true
  end,

  access = function(conf, ctx)
    local where, token = find_token(conf)
    if not token then return deny("missing token") end
    local who, cred, claims = remembered(conf, token)
    if not who then
      who, cred, claims = verify(conf, ctx, token)
      if not who then return deny(cred) end
      remember(conf, token, who, cred, claims)
    end
    -- Checked on every use: a remembered token expires like any other.
    local problem = time_problem(conf, claims)
    if problem then return deny(problem) end
    for _, name in ipairs(conf.required_claims) do
      if claims[name] == nil then return deny("missing claim " .. name) end
    end

    consumer.attach(ctx, who)
    ctx.jwt_claims = claims  -- shared with later requests bearing the same token: read only
    for claim, name in pairs(conf.claims_to_headers) do
      request.set_header(name, header_value(claims[claim]))
    end
    if conf.hide_credentials then hide(conf, where) end
  end,
}
