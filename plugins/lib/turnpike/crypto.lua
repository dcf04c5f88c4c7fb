-- turnpike.crypto: digests, HMAC, constant-time comparison, random bytes and JWT signature
-- verification, through LuaJIT's FFI straight into OpenSSL 3's libcrypto (which the gateway
-- links dynamically, so ffi.C finds it).
--
--   local crypto = require "turnpike.crypto"
--   crypto.hex(crypto.sha256("abc"))                 --> "ba7816bf..."
--   local mac = crypto.hmac("sha256", secret, msg)    -- raw bytes
--   if crypto.equal(mac, given) then ... end          -- constant time
--   local key = assert(crypto.public_key(pem))        -- parse once (conf time), reuse
--   local ok, err = crypto.verify("RS256", key, signing_input, signature)
--
-- Per worker VM, one digest context and one HMAC context per algorithm are made once and reused;
-- a call allocates only its result string. Failures clear OpenSSL's per-thread error queue, so
-- a plugin's bad key cannot leave errors behind for the TLS code of the same worker.
local ffi = require "ffi"

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_mac_st EVP_MAC;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct bio_st BIO;
typedef struct x509_st X509;
typedef struct ossl_param_st {
  const char* key;
  unsigned int data_type;
  void* data;
  size_t data_size;
  size_t return_size;
} OSSL_PARAM;

EVP_MD* EVP_MD_fetch(void* libctx, const char* algorithm, const char* properties);
void EVP_MD_free(EVP_MD* md);
EVP_MD_CTX* EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX* ctx);
int EVP_DigestInit_ex(EVP_MD_CTX* ctx, const EVP_MD* type, void* impl);
int EVP_DigestUpdate(EVP_MD_CTX* ctx, const void* d, size_t cnt);
int EVP_DigestFinal_ex(EVP_MD_CTX* ctx, unsigned char* md, unsigned int* s);

EVP_MAC* EVP_MAC_fetch(void* libctx, const char* algorithm, const char* properties);
void EVP_MAC_free(EVP_MAC* mac);
EVP_MAC_CTX* EVP_MAC_CTX_new(EVP_MAC* mac);
void EVP_MAC_CTX_free(EVP_MAC_CTX* ctx);
int EVP_MAC_CTX_set_params(EVP_MAC_CTX* ctx, const OSSL_PARAM params[]);
int EVP_MAC_init(EVP_MAC_CTX* ctx, const unsigned char* key, size_t keylen,
                 const OSSL_PARAM params[]);
int EVP_MAC_update(EVP_MAC_CTX* ctx, const unsigned char* data, size_t datalen);
int EVP_MAC_final(EVP_MAC_CTX* ctx, unsigned char* out, size_t* outl, size_t outsize);

int CRYPTO_memcmp(const void* a, const void* b, size_t len);
int RAND_bytes(unsigned char* buf, int num);

BIO* BIO_new_mem_buf(const void* buf, int len);
int BIO_free(BIO* a);
EVP_PKEY* PEM_read_bio_PUBKEY(BIO* bp, EVP_PKEY** x, void* cb, void* u);
EVP_PKEY* PEM_read_bio_PrivateKey(BIO* bp, EVP_PKEY** x, void* cb, void* u);
X509* PEM_read_bio_X509(BIO* bp, X509** x, void* cb, void* u);
EVP_PKEY* d2i_PUBKEY(EVP_PKEY** a, const unsigned char** pp, long length);
EVP_PKEY* X509_get_pubkey(X509* x);
void X509_free(X509* a);
void EVP_PKEY_free(EVP_PKEY* pkey);
int EVP_PKEY_get_base_id(const EVP_PKEY* pkey);
int EVP_PKEY_get_bits(const EVP_PKEY* pkey);
int EVP_PKEY_get_size(const EVP_PKEY* pkey);
int EVP_PKEY_get_group_name(const EVP_PKEY* pkey, char* name, size_t name_sz, size_t* gname_len);

int EVP_MD_CTX_reset(EVP_MD_CTX* ctx);
int EVP_DigestVerifyInit(EVP_MD_CTX* ctx, EVP_PKEY_CTX** pctx, const EVP_MD* type, void* e,
                         EVP_PKEY* pkey);
int EVP_DigestVerify(EVP_MD_CTX* ctx, const unsigned char* sig, size_t siglen,
                     const unsigned char* tbs, size_t tbslen);
int EVP_DigestSignInit(EVP_MD_CTX* ctx, EVP_PKEY_CTX** pctx, const EVP_MD* type, void* e,
                       EVP_PKEY* pkey);
int EVP_DigestSign(EVP_MD_CTX* ctx, unsigned char* sigret, size_t* siglen,
                   const unsigned char* tbs, size_t tbslen);
int EVP_PKEY_CTX_set_rsa_padding(EVP_PKEY_CTX* ctx, int pad_mode);
int EVP_PKEY_CTX_set_rsa_pss_saltlen(EVP_PKEY_CTX* ctx, int saltlen);

unsigned long ERR_get_error(void);
void ERR_clear_error(void);
void ERR_error_string_n(unsigned long e, char* buf, size_t len);
]]

local C = ffi.C
local byte, char, format, sub, rep = string.byte, string.char, string.format, string.sub,
  string.rep
local type, error, tostring = type, error, tostring

local crypto = {}

-- OpenSSL's key type numbers (NIDs, openssl/obj_mac.h).
local NID_RSA, NID_RSA_PSS, NID_EC, NID_ED25519, NID_ED448 = 6, 912, 408, 1087, 1088
local RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_DIGEST = 6, -1
local OSSL_PARAM_UTF8_STRING = 4

local out = ffi.new("unsigned char[64]")   -- the largest digest or MAC (SHA-512)
local out_uint = ffi.new("unsigned int[1]")
local out_size = ffi.new("size_t[1]")
local pctx_out = ffi.new("EVP_PKEY_CTX*[1]")
local errbuf = ffi.new("char[256]")

-- The first queued OpenSSL error as text (then the queue is cleared), or `fallback`.
local function openssl_error(fallback)
  local code = C.ERR_get_error()
  C.ERR_clear_error()
  if code == 0 then return fallback end
  C.ERR_error_string_n(code, errbuf, 256)
  return ffi.string(errbuf)
end

local function check_string(what, s, level)
  if type(s) ~= "string" then
    error("crypto: " .. what .. " must be a string, got " .. type(s), level + 1)
  end
end

-- ---- Digests and HMAC ------------------------------------------------------------------------

-- name → fetched EVP_MD (OpenSSL 3 fetches an implementation per call unless it is kept).
local MD_NAMES = { sha1 = "SHA1", sha256 = "SHA256", sha384 = "SHA384", sha512 = "SHA512" }
local md = {}
for name, ossl in pairs(MD_NAMES) do
  local fetched = C.EVP_MD_fetch(nil, ossl, nil)
  if fetched == nil then error("crypto: OpenSSL has no " .. ossl .. ": " .. openssl_error("")) end
  md[name] = ffi.gc(fetched, C.EVP_MD_free)
end

local md_ctx = ffi.gc(C.EVP_MD_CTX_new(), C.EVP_MD_CTX_free)
-- Signatures get their own context: it carries a key context that digests must not inherit.
local sig_ctx = ffi.gc(C.EVP_MD_CTX_new(), C.EVP_MD_CTX_free)

local function digest(name, s)
  check_string("the message", s, 3)
  if C.EVP_DigestInit_ex(md_ctx, md[name], nil) ~= 1
      or C.EVP_DigestUpdate(md_ctx, s, #s) ~= 1
      or C.EVP_DigestFinal_ex(md_ctx, out, out_uint) ~= 1 then
    error("crypto: " .. name .. ": " .. openssl_error("failed"), 3)
  end
  return ffi.string(out, out_uint[0])
end

-- Raw digests (20, 32, 48, 64 bytes).
function crypto.sha1(s) return digest("sha1", s) end
function crypto.sha256(s) return digest("sha256", s) end
function crypto.sha384(s) return digest("sha384", s) end
function crypto.sha512(s) return digest("sha512", s) end

-- One HMAC context per digest, its digest set once; EVP_MAC_init with a key restarts it.
local hmac_mac = C.EVP_MAC_fetch(nil, "HMAC", nil)
if hmac_mac == nil then error("crypto: OpenSSL has no HMAC: " .. openssl_error("")) end
hmac_mac = ffi.gc(hmac_mac, C.EVP_MAC_free)
local hmac_ctx = {}
for name, ossl in pairs(MD_NAMES) do
  local ctx = ffi.gc(C.EVP_MAC_CTX_new(hmac_mac), C.EVP_MAC_CTX_free)
  local params = ffi.new("OSSL_PARAM[2]")
  params[0].key = "digest"
  params[0].data_type = OSSL_PARAM_UTF8_STRING
  params[0].data = ffi.cast("void*", ffi.cast("const char*", ossl))  -- copied by set_params
  params[0].data_size = #ossl
  params[0].return_size = ffi.cast("size_t", -1)
  if C.EVP_MAC_CTX_set_params(ctx, params) ~= 1 then
    error("crypto: HMAC-" .. ossl .. ": " .. openssl_error("unavailable"))
  end
  hmac_ctx[name] = ctx
end

-- HMAC (RFC 2104) of `msg` under `key` with alg "sha1", "sha256", "sha384" or "sha512"; raw.
function crypto.hmac(alg, key, msg)
  local ctx = hmac_ctx[alg]
  if not ctx then error("crypto.hmac: unknown algorithm " .. tostring(alg), 2) end
  check_string("the key", key, 2)
  check_string("the message", msg, 2)
  if C.EVP_MAC_init(ctx, key, #key, nil) ~= 1
      or C.EVP_MAC_update(ctx, msg, #msg) ~= 1
      or C.EVP_MAC_final(ctx, out, out_size, 64) ~= 1 then
    error("crypto.hmac: " .. openssl_error("failed"), 2)
  end
  return ffi.string(out, out_size[0])
end

-- ---- Comparison, encoding, randomness --------------------------------------------------------

-- Whether a and b are the same bytes, in time that depends only on their length (a MAC or a
-- token compared this way tells an attacker nothing about how much of it was right).
function crypto.equal(a, b)
  check_string("a", a, 2)
  check_string("b", b, 2)
  if #a ~= #b then return false end
  return C.CRYPTO_memcmp(a, b, #a) == 0
end

local HEX = {}
for i = 0, 255 do HEX[char(i)] = format("%02x", i) end

-- Lowercase hexadecimal of the bytes of s.
function crypto.hex(s)
  check_string("the input", s, 2)
  return (s:gsub(".", HEX))
end

local random_buf, random_size = nil, 0

-- n bytes from OpenSSL's CSPRNG (RAND_bytes).
function crypto.random_bytes(n)
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 or n > 1048576 then
    error("crypto.random_bytes: n must be an integer from 0 to 1048576", 2)
  end
  if n > random_size then
    random_size = math.max(n, 64)
    random_buf = ffi.new("unsigned char[?]", random_size)
  end
  if n > 0 and C.RAND_bytes(random_buf, n) ~= 1 then
    error("crypto.random_bytes: " .. openssl_error("RAND_bytes failed"), 2)
  end
  return ffi.string(random_buf, n)
end

-- ---- Keys ------------------------------------------------------------------------------------

local Key = {}
Key.__index = Key
Key.__tostring = function(k) return "crypto key (" .. k.type .. " " .. k.bits .. ")" end

local KEY_TYPES = { [NID_RSA] = "RSA", [NID_RSA_PSS] = "RSA-PSS", [NID_EC] = "EC",
                    [NID_ED25519] = "Ed25519", [NID_ED448] = "Ed448" }
local group_buf = ffi.new("char[64]")

local function wrap_key(pkey, private)
  pkey = ffi.gc(pkey, C.EVP_PKEY_free)
  local key = setmetatable({
    pkey = pkey,
    type = KEY_TYPES[C.EVP_PKEY_get_base_id(pkey)] or "other",
    bits = C.EVP_PKEY_get_bits(pkey),
    private = private,
  }, Key)
  if key.type == "EC" and C.EVP_PKEY_get_group_name(pkey, group_buf, 64, out_size) == 1 then
    key.curve = ffi.string(group_buf, out_size[0])  -- "prime256v1", "secp384r1", "secp521r1"
  end
  return key
end

-- Reads one PEM object with `reader`; returns the EVP_PKEY or nil.
local function read_pem(pem, reader)
  local bio = C.BIO_new_mem_buf(pem, #pem)
  if bio == nil then return nil end
  local obj = reader(bio, nil, nil, nil)
  C.BIO_free(bio)
  return obj
end

-- A public key from PEM: "PUBLIC KEY" (SubjectPublicKeyInfo) or a "CERTIFICATE" (its key).
-- Parse once (when a conf is checked) and keep the object: parsing costs far more than a verify.
-- Returns the key, or nil and OpenSSL's message.
function crypto.public_key(pem)
  if type(pem) ~= "string" then return nil, "expected a PEM string, got " .. type(pem) end
  if not pem:find("-----BEGIN ", 1, true) then
    return nil, "invalid public key: not PEM (-----BEGIN PUBLIC KEY----- ...)"
  end
  local pkey
  if pem:find("-----BEGIN CERTIFICATE-----", 1, true) then
    local cert = read_pem(pem, C.PEM_read_bio_X509)
    if cert ~= nil then
      pkey = C.X509_get_pubkey(cert)
      C.X509_free(cert)
    end
  else
    pkey = read_pem(pem, C.PEM_read_bio_PUBKEY)
  end
  if pkey == nil then return nil, "invalid public key: " .. openssl_error("no key found") end
  return wrap_key(pkey, false)
end

-- ---- JWK public keys (RFC 7517, RFC 7518 §6) ---------------------------------------------------
-- A JWK becomes the DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) that OpenSSL reads: RSA keys
-- per RFC 3279 §2.3.1, EC keys as the uncompressed point (SEC 1 §2.3.3), OKP keys per RFC 8410.

local function der_length(n)
  if n < 0x80 then return char(n) end
  if n < 0x100 then return "\129" .. char(n) end
  return "\130" .. char(math.floor(n / 256), n % 256)
end

local function der(tag, body) return char(tag) .. der_length(#body) .. body end

-- A positive INTEGER from big-endian unsigned bytes (X.690 §8.3: minimal).
local function der_unsigned(bytes)
  local first = bytes:find("[^%z]")
  bytes = first and sub(bytes, first) or "\0"
  if byte(bytes, 1) >= 0x80 then bytes = "\0" .. bytes end
  return der(0x02, bytes)
end

local OID_RSA = "\6\9\42\134\72\134\247\13\1\1\1"      -- 1.2.840.113549.1.1.1
local OID_EC = "\6\7\42\134\72\206\61\2\1"               -- 1.2.840.10045.2.1
-- crv → the curve's OID and the byte length of x and y.
local JWK_CURVES = {
  ["P-256"] = { oid = "\6\8\42\134\72\206\61\3\1\7", size = 32 },  -- prime256v1
  ["P-384"] = { oid = "\6\5\43\129\4\0\34", size = 48 },              -- secp384r1
  ["P-521"] = { oid = "\6\5\43\129\4\0\35", size = 66 },              -- secp521r1
}
local OKP_CURVES = {
  Ed25519 = { oid = "\6\3\43\101\112", size = 32 },  -- 1.3.101.112
  Ed448 = { oid = "\6\3\43\101\113", size = 57 },    -- 1.3.101.113
}

local function spki(algorithm, key_bits)
  return der(0x30, der(0x30, algorithm) .. der(0x03, "\0" .. key_bits))
end

-- The DER SubjectPublicKeyInfo of a JWK table, or nil and why.
local function jwk_der(jwk)
  local base64 = require "turnpike.base64"
  local function field(name)
    local v = jwk[name]
    if type(v) ~= "string" then return nil, "jwk: '" .. name .. "' missing" end
    local bytes = base64.decode_url(v)
    if not bytes or #bytes == 0 then return nil, "jwk: '" .. name .. "' is not base64url" end
    return bytes
  end
  local kty = jwk.kty
  if kty == "RSA" then
    local n, err = field("n")
    if not n then return nil, err end
    local e
    e, err = field("e")
    if not e then return nil, err end
    return spki(OID_RSA .. "\5\0", der(0x30, der_unsigned(n) .. der_unsigned(e)))
  elseif kty == "EC" then
    local curve = JWK_CURVES[jwk.crv]
    if not curve then return nil, "jwk: unsupported EC curve " .. tostring(jwk.crv) end
    local x, err = field("x")
    if not x then return nil, err end
    local y
    y, err = field("y")
    if not y then return nil, err end
    -- RFC 7518 §6.2.1.2: x and y are the full size of a coordinate, leading zeros included.
    if #x ~= curve.size or #y ~= curve.size then
      return nil, "jwk: x and y must be " .. curve.size .. " bytes for " .. jwk.crv
    end
    return spki(OID_EC .. curve.oid, "\4" .. x .. y)
  elseif kty == "OKP" then
    local curve = OKP_CURVES[jwk.crv]
    if not curve then return nil, "jwk: unsupported OKP curve " .. tostring(jwk.crv) end
    local x, err = field("x")
    if not x then return nil, err end
    if #x ~= curve.size then return nil, "jwk: x must be " .. curve.size .. " bytes" end
    return spki(curve.oid, x)
  end
  return nil, "jwk: unsupported kty " .. tostring(kty) .. " (expected RSA, EC or OKP)"
end

local der_in = ffi.new("const unsigned char*[1]")

-- A public key from a JWK (a table, or its JSON text): kty "RSA" (n, e), "EC" (crv P-256,
-- P-384, P-521; x, y) or "OKP" (crv Ed25519, Ed448; x). Other members (kid, use, alg) are
-- ignored: checking that a token's alg fits the key is crypto.verify's job. Returns the key
-- object of crypto.public_key, or nil and why. For a JWKS, call it per key and index by kid.
function crypto.public_key_jwk(jwk)
  if type(jwk) == "string" then
    local decoded, err = require("turnpike.json").decode(jwk)
    if not decoded then return nil, "jwk: " .. err end
    jwk = decoded
  end
  if type(jwk) ~= "table" then return nil, "jwk: expected a table, got " .. type(jwk) end
  local bytes, err = jwk_der(jwk)
  if not bytes then return nil, err end
  der_in[0] = ffi.cast("const unsigned char*", bytes)
  local pkey = C.d2i_PUBKEY(nil, der_in, #bytes)
  der_in[0] = nil
  if pkey == nil then return nil, "jwk: invalid key: " .. openssl_error("rejected by OpenSSL") end
  return wrap_key(pkey, false)
end

-- A private key from PEM ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"; unencrypted).
function crypto.private_key(pem)
  if type(pem) ~= "string" then return nil, "expected a PEM string, got " .. type(pem) end
  if not pem:find("-----BEGIN ", 1, true) then
    return nil, "invalid private key: not PEM (-----BEGIN PRIVATE KEY----- ...)"
  end
  local pkey = read_pem(pem, C.PEM_read_bio_PrivateKey)
  if pkey == nil then return nil, "invalid private key: " .. openssl_error("no key found") end
  return wrap_key(pkey, true)
end

-- ---- JWS signatures (RFC 7518 §3) ------------------------------------------------------------

-- alg → how to check: digest, key family, and for ECDSA the curve and the size of r and s.
local ALGS = {
  RS256 = { md = "sha256", family = "rsa" },
  RS384 = { md = "sha384", family = "rsa" },
  RS512 = { md = "sha512", family = "rsa" },
  PS256 = { md = "sha256", family = "rsa", pss = true },
  PS384 = { md = "sha384", family = "rsa", pss = true },
  PS512 = { md = "sha512", family = "rsa", pss = true },
  ES256 = { md = "sha256", family = "ec", curve = "prime256v1", size = 32 },
  ES384 = { md = "sha384", family = "ec", curve = "secp384r1", size = 48 },
  ES512 = { md = "sha512", family = "ec", curve = "secp521r1", size = 66 },
  EdDSA = { family = "eddsa" },  -- RFC 8037: Ed25519 or Ed448, no separate digest
}

-- Why `key` cannot be used for `alg`, or nil.
local function key_mismatch(spec, alg, key)
  local t = key.type
  if spec.family == "rsa" then
    if t ~= "RSA" and not (spec.pss and t == "RSA-PSS") then
      return "an " .. t .. " key cannot check " .. alg
    end
    -- RFC 7518 §3.3 and §3.5: a key of 2048 bits or larger MUST be used.
    if key.bits < 2048 then return "RSA keys shorter than 2048 bits are refused" end
  elseif spec.family == "ec" then
    if t ~= "EC" or key.curve ~= spec.curve then
      return "an " .. t .. (key.curve and (" " .. key.curve) or "") .. " key cannot check " .. alg
    end
  elseif t ~= "Ed25519" and t ~= "Ed448" then
    return "an " .. t .. " key cannot check " .. alg
  end
end

-- RFC 7518 §3.4: the JWS signature is r || s, each `size` bytes; OpenSSL wants the DER
-- ECDSA-Sig-Value SEQUENCE { r INTEGER, s INTEGER } (RFC 3279 §2.2.3).
local function jose_to_der(sig, size)
  return der(0x30, der_unsigned(sub(sig, 1, size)) .. der_unsigned(sub(sig, size + 1)))
end

-- The reverse, for sign: DER → r || s. Returns nil on anything unexpected.
local function der_to_jose(der, size)
  local pos = 3
  if byte(der, 2) == 0x81 then pos = 4 end
  local parts = {}
  for i = 1, 2 do
    if byte(der, pos) ~= 2 then return nil end
    local len = byte(der, pos + 1)
    local v = sub(der, pos + 2, pos + 1 + len)
    pos = pos + 2 + len
    v = v:gsub("^%z+", "")
    if #v > size then return nil end
    parts[i] = rep("\0", size - #v) .. v
  end
  return parts[1] .. parts[2]
end

-- Prepares sig_ctx for `alg` with `key` through `init` (EVP_DigestVerifyInit or
-- EVP_DigestSignInit). Returns the spec, or nil and why.
local function start(alg, key, init)
  local spec = ALGS[alg]
  if not spec then return nil, "unsupported algorithm " .. tostring(alg) end
  if getmetatable(key) ~= Key then return nil, "expected a key from crypto.public_key" end
  local mismatch = key_mismatch(spec, alg, key)
  if mismatch then return nil, mismatch end
  C.EVP_MD_CTX_reset(sig_ctx)
  if init(sig_ctx, pctx_out, spec.md and md[spec.md] or nil, nil, key.pkey) ~= 1 then
    return nil, openssl_error("cannot use the key")
  end
  if spec.pss then
    -- RFC 7518 §3.5: RSASSA-PSS with MGF1 of the same hash and a salt as long as the hash.
    local pctx = pctx_out[0]
    if C.EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) ~= 1
        or C.EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) ~= 1 then
      return nil, openssl_error("cannot set PSS padding")
    end
  end
  return spec
end

-- Whether `sig` is a valid JWS signature of `msg` (the signing input, header.payload) by
-- `key` with `alg` (RS256/384/512, PS256/384/512, ES256/384/512, EdDSA). ES signatures are the
-- JOSE r || s. Returns true or false; nil and why when the alg is unknown or the key does not
-- fit it (an RSA key for ES256, a P-384 key for ES256, RSA under 2048 bits).
function crypto.verify(alg, key, msg, sig)
  check_string("the message", msg, 2)
  check_string("the signature", sig, 2)
  local spec, err = start(alg, key, C.EVP_DigestVerifyInit)
  if not spec then return nil, err end
  if spec.size then
    if #sig ~= 2 * spec.size then return false end
    sig = jose_to_der(sig, spec.size)
  elseif spec.family == "rsa" and #sig ~= math.floor((key.bits + 7) / 8) then
    -- RFC 8017 §8.1.2 and §8.2.2, step 1: a signature not exactly as long as the modulus is
    -- invalid. OpenSSL checks that for PKCS #1 v1.5 but takes a shorter PSS signature as the
    -- same number with leading zeros: one whose first byte is 0 (1 in 256) verified with that
    -- byte cut off.
    return false
  end
  local rc = C.EVP_DigestVerify(sig_ctx, sig, #sig, msg, #msg)
  if rc ~= 1 then C.ERR_clear_error() end  -- a bad signature queues errors too
  return rc == 1
end

local sig_buf, sig_size = nil, 0

-- The JWS signature of `msg` by a private key (a crypto.private_key object or its PEM) with
-- `alg`; ES signatures as r || s. For tests and tools: parse the key once where it matters.
function crypto.sign(alg, key, msg)
  check_string("the message", msg, 2)
  if type(key) == "string" then
    local parsed, err = crypto.private_key(key)
    if not parsed then return nil, err end
    key = parsed
  end
  if getmetatable(key) ~= Key or not key.private then return nil, "expected a private key" end
  local spec, err = start(alg, key, C.EVP_DigestSignInit)
  if not spec then return nil, err end
  local max = C.EVP_PKEY_get_size(key.pkey)
  if max > sig_size then
    sig_size = max
    sig_buf = ffi.new("unsigned char[?]", max)
  end
  out_size[0] = sig_size
  if C.EVP_DigestSign(sig_ctx, sig_buf, out_size, msg, #msg) ~= 1 then
    return nil, openssl_error("signing failed")
  end
  local sig = ffi.string(sig_buf, out_size[0])
  if spec.size then return der_to_jose(sig, spec.size) end
  return sig
end

return crypto
