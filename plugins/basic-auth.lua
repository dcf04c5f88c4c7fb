-- basic-auth: a client proves who it is with a user name and password in the Authorization
-- header (HTTP Basic, RFC 7617). The pair belongs to a consumer (consumers[].plugins.basic-auth);
-- the consumer is attached to the request, so its own plugins run and its name is in the access
-- log. A missing or wrong pair is answered 401 with a WWW-Authenticate challenge.
--
-- Passwords are best stored as a salted HMAC, never in the clear:
--   password_hash: "hmac-sha256$<salt>$<hex of HMAC-SHA256(key = salt, message = password)>"
-- (hmac-sha384 and hmac-sha512 too). It is a fast hash, not a slow KDF: see docs/plugins-auth.md for why, and
-- give consumers long random passwords.
--
--   routes:
--     - name: api
--       plugins:
--         basic-auth: { realm: api, hide_credentials: true }
--   consumers:
--     - username: alice
--       plugins:
--         basic-auth:
--           username: alice
--           password_hash: "hmac-sha256$q2Jx9c1vT0aL$0f3c...e1"
local turnpike = require "turnpike"
local crypto = require "turnpike.crypto"
local base64 = require "turnpike.base64"
local json = require "turnpike.json"

local request, consumer = turnpike.request, turnpike.consumer

local HASH_PATTERN = "^(hmac%-sha%d%d%d)%$([^$]+)%$(%x+)$"
local HASH_SIZES = { ["hmac-sha256"] = 32, ["hmac-sha384"] = 48, ["hmac-sha512"] = 64 }
local MIN_SALT = 8

-- consumer conf → { alg, salt, digest } or { plain_digest }: the stored secret in the form the
-- request path compares against, made once per conf table (weak keys: a reload drops them).
local secrets = setmetatable({}, { __mode = "k" })

local function unhex(h) return (h:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end)) end

-- The comparable form of a consumer's password, or nil and why it is unusable.
local function parse_secret(conf)
  if conf.password_hash then
    local alg, salt, hex = conf.password_hash:match(HASH_PATTERN)
    local size = alg and HASH_SIZES[alg]
    if not size then
      return nil, 'conf.password_hash: expected "hmac-sha256$<salt>$<hex>" (or hmac-sha384, hmac-sha512)'
    end
    if #salt < MIN_SALT then
      return nil, "conf.password_hash: the salt must have at least " .. MIN_SALT .. " characters"
    end
    if #hex ~= 2 * size then
      return nil, "conf.password_hash: " .. alg .. " needs " .. 2 * size .. " hex digits, got " .. #hex
    end
    return { alg = alg:sub(6), salt = salt, digest = unhex(hex) }
  end
  -- A plain password is compared through its SHA-256, so the time taken tells nothing about
  -- its length or how much of it matched.
  return { plain_digest = crypto.sha256(conf.password) }
end

local function secret_of(conf)
  local s = secrets[conf]
  if not s then
    s = assert(parse_secret(conf))
    secrets[conf] = s
  end
  return s
end

local function matches(secret, password)
  if secret.plain_digest then return crypto.equal(crypto.sha256(password), secret.plain_digest) end
  return crypto.equal(crypto.hmac(secret.alg, secret.salt, password), secret.digest)
end

-- Checked against when the user name is unknown, so that case costs what a wrong password does.
local DECOY = { alg = "sha256", salt = "decoy-salt", digest = string.rep("\0", 32) }

-- user, password from "Basic base64(user:password)" (RFC 7617 §2); nil when malformed.
local function credentials(header)
  local encoded = header:match("^[Bb][Aa][Ss][Ii][Cc] +([%w+/=]+) *$")
  if not encoded then return nil end
  local decoded = base64.decode(encoded)
  if not decoded then return nil end
  local colon = decoded:find(":", 1, true)  -- the user-id cannot contain a colon
  if not colon or colon == 1 then return nil end
  return decoded:sub(1, colon - 1), decoded:sub(colon + 1)
end

local function deny(conf, message)
  return turnpike.exit(401, json.encode({ error = "unauthorized", message = message }), {
    ["content-type"] = "application/json",
    ["www-authenticate"] = 'Basic realm="' .. conf.realm .. '", charset="UTF-8"',
  })
end

return {
  name = "basic-auth",
  version = "1.0",
  priority = 2520,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      -- Shown by browsers in the login prompt; no quotes, backslashes or control characters.
      realm = { type = "string", default = "turnpike", minLength = 1, maxLength = 128,
                pattern = [[^[^"\\\x00-\x1f\x7f]+$]] },
      -- Remove the Authorization header before the request goes upstream.
      hide_credentials = { type = "boolean", default = false },
    },
  },

  consumer_schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      username = { type = "string", minLength = 1, pattern = "^[^:]+$" },
      password_hash = { type = "string", minLength = 1 },
      -- In the clear: only when set explicitly; prefer password_hash.
      password = { type = "string", minLength = 1 },
    },
    required = { "username" },
  },

  check_schema = function(conf, kind)
    if kind ~= "consumer" then return true end
    if (conf.password == nil) == (conf.password_hash == nil) then
      return false, "conf: set exactly one of password_hash and password"
    end
    local secret, err = parse_secret(conf)
    if not secret then return false, err end
    secrets[conf] = secret
    return true
  end,

  access = function(conf, ctx)
    local header = request.get_header("authorization")
    if not header then return deny(conf, "missing authorization") end
    local user, password = credentials(header)
    if not user then return deny(conf, "malformed basic credentials") end

    local who, cred = consumer.find(ctx, "basic-auth", "username", user)
    if not who then
      matches(DECOY, password)
      return deny(conf, "invalid user name or password")
    end
    if not matches(secret_of(cred), password) then
      return deny(conf, "invalid user name or password")
    end
    consumer.attach(ctx, who)

    if conf.hide_credentials then request.set_header("authorization", nil) end
  end,
}
