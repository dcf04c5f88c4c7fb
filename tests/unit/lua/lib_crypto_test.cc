// turnpike.crypto (plugins/lib/turnpike/crypto.lua, FFI into libcrypto): FIPS 180 digests,
// RFC 4231 HMAC vectors, constant-time equality, and JWS signatures checked against an
// independent implementation: key pairs made here with libcrypto's C API, signatures made in
// C++ verified in Lua and the other way round, and every key/alg mismatch refused.
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "lua_test_util.h"
#include "test_keys.h"

namespace turnpike::lua::test {
namespace {

// A JWS signature made by libcrypto directly; ES* converted from DER to r || s (RFC 7518 §3.4).
std::string cxx_sign(const KeyPair& key, const EVP_MD* md, bool pss, size_t ec_size,
                     const std::string& msg) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  EXPECT_EQ(EVP_DigestSignInit(ctx, &pctx, md, nullptr, key.pkey), 1);
  if (pss) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  size_t len = 0;
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(msg.data()),
                 msg.size());
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(msg.data()), msg.size()),
            1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (ec_size == 0) return sig;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  std::string raw(2 * ec_size, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), ec_size);
  BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + ec_size,
               ec_size);
  ECDSA_SIG_free(es);
  return raw;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

// A Lua string literal of arbitrary bytes (decimal escapes).
std::string lua_bytes(const std::string& s) {
  std::string out = "'";
  for (unsigned char c : s) {
    out += '\\';
    out += std::to_string(c);
  }
  return out + "'";
}

class LibCryptoTest : public LuaTest {
 protected:
  // Key pairs are made on first use and kept for the test process: RSA generation is slow
  // (seconds under the sanitizers), and ctest runs each test in a process of its own.
  static KeyPair* keep(EVP_PKEY* pkey) { return new KeyPair(make_key(pkey)); }  // never freed
  static KeyPair* rsa() {
    static KeyPair* k = keep(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
    return k;
  }
  static KeyPair* rsa_small() {
    static KeyPair* k = keep(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
    return k;
  }
  static KeyPair* p256() {
    static KeyPair* k = keep(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    return k;
  }
  static KeyPair* p384() {
    static KeyPair* k = keep(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
    return k;
  }
  static KeyPair* p521() {
    static KeyPair* k = keep(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521"));
    return k;
  }
  static KeyPair* ed25519() {
    static KeyPair* k = keep(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    return k;
  }

  std::string run(const std::string& body) {
    return eval("local crypto = require 'turnpike.crypto'\n" + body);
  }

  // crypto.verify(alg, public_key(pem), msg, sig) as a string ("true", "false", "nil <err>").
  std::string verify(const std::string& alg, const KeyPair& key, const std::string& msg,
                     const std::string& sig) {
    return run("local key = assert(crypto.public_key([[" + key.public_pem + "]]))\n"
               "local ok, err = crypto.verify('" + alg + "', key, " + lua_bytes(msg) + ", " +
               lua_bytes(sig) + ")\n"
               "return tostring(ok) .. (err and ' ' .. err or '')");
  }
};

TEST_F(LibCryptoTest, DigestsMatchFips180Vectors) {
  EXPECT_EQ(run("return crypto.hex(crypto.sha1('abc'))"),
            "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(run("return crypto.hex(crypto.sha256('abc'))"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(run("return crypto.hex(crypto.sha384('abc'))"),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
            "8086072ba1e7cc2358baeca134c825a7");
  EXPECT_EQ(run("return crypto.hex(crypto.sha512('abc'))"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(run("return crypto.hex(crypto.sha256(''))"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_F(LibCryptoTest, HmacMatchesRfc4231Vectors) {
  const std::vector<std::tuple<std::string, std::string, std::string, std::string>> cases = {
      // RFC 4231 §4.2 (test case 1) for each SHA-2 size, and RFC 2202 §3 for SHA-1.
      {"sha256", "('\\11'):rep(20)", "'Hi There'",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"sha384", "('\\11'):rep(20)", "'Hi There'",
       "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
       "faea9ea9076ede7f4af152e8b2fa9cb6"},
      {"sha512", "('\\11'):rep(20)", "'Hi There'",
       "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
       "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
      {"sha1", "('\\11'):rep(20)", "'Hi There'", "b617318655057264e28bc0b6fb378c8ef146be00"},
      // §4.3: a key shorter than the output.
      {"sha256", "'Jefe'", "'what do ya want for nothing?'",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      // §4.4, §4.5: 50-byte messages.
      {"sha256", "('\\170'):rep(20)", "('\\221'):rep(50)",
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {"sha256",
       "(function() local t = {} for i = 1, 25 do t[i] = string.char(i) end "
       "return table.concat(t) end)()",
       "('\\205'):rep(50)", "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      // §4.7, §4.8: a key longer than the block size (hashed first).
      {"sha256", "('\\170'):rep(131)", "'Test Using Larger Than Block-Size Key - Hash Key First'",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {"sha256", "('\\170'):rep(131)",
       "'This is a test using a larger than block-size key and a larger than block-size data. "
       "The key needs to be hashed before being used by the HMAC algorithm.'",
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
      // An empty key and message (openssl dgst -sha256 -hmac '').
      {"sha256", "''", "''", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
  };
  for (const auto& [alg, key, msg, hex] : cases) {
    EXPECT_EQ(run("return crypto.hex(crypto.hmac('" + alg + "', " + key + ", " + msg + "))"), hex)
        << alg << " " << key;
  }
  // The contexts are reused: a second key must not be mixed with the first.
  EXPECT_EQ(run("crypto.hmac('sha256', 'other key', 'x')\n"
                "return crypto.hex(crypto.hmac('sha256', 'Jefe', 'what do ya want for nothing?'))"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_F(LibCryptoTest, UnknownHmacAlgorithmIsAnError) {
  std::string error;
  vm().run_chunk("require('turnpike.crypto').hmac('md5', 'k', 'm')", error);
  EXPECT_NE(error.find("crypto.hmac: unknown algorithm md5"), std::string::npos) << error;
}

TEST_F(LibCryptoTest, EqualComparesWholeStrings) {
  EXPECT_EQ(run("return table.concat({ tostring(crypto.equal('abc', 'abc')),\n"
                "  tostring(crypto.equal('abc', 'abd')), tostring(crypto.equal('abc', 'ab')),\n"
                "  tostring(crypto.equal('', '')), tostring(crypto.equal('a\\0b', 'a\\0c')) }, ' ')"),
            "true false false true false");
}

TEST_F(LibCryptoTest, RandomBytesHaveTheLengthAskedAndDiffer) {
  EXPECT_EQ(run("local a, b = crypto.random_bytes(32), crypto.random_bytes(32)\n"
                "return #a .. ' ' .. tostring(a ~= b) .. ' ' .. #crypto.random_bytes(0) .. ' ' ..\n"
                "  #crypto.random_bytes(1000)"),
            "32 true 0 1000");
}

TEST_F(LibCryptoTest, PublicKeyDescribesTheKeyOrSaysWhyNot) {
  EXPECT_EQ(run("local k = assert(crypto.public_key([[" + rsa()->public_pem + "]]))\n"
                "return k.type .. ' ' .. k.bits .. ' ' .. tostring(k.private)"),
            "RSA 2048 false");
  EXPECT_EQ(run("local k = assert(crypto.public_key([[" + p256()->public_pem + "]]))\n"
                "return k.type .. ' ' .. k.curve"),
            "EC prime256v1");
  EXPECT_EQ(run("local k, err = crypto.public_key('-----BEGIN PUBLIC KEY-----\\nAAAA\\n"
                "-----END PUBLIC KEY-----\\n')\n"
                "return tostring(k) .. ' ' .. tostring(err:find('^invalid public key: ') ~= nil)"),
            "nil true");
  EXPECT_EQ(run("local k, err = crypto.public_key('hello') return tostring(k) .. ' ' .. err"),
            "nil invalid public key: not PEM (-----BEGIN PUBLIC KEY----- ...)");
}

TEST_F(LibCryptoTest, FailedParsesLeaveNoOpenSslErrorsBehind) {
  ERR_clear_error();
  run("crypto.public_key('-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\\n')\n"
      "crypto.private_key('nope')");
  EXPECT_EQ(ERR_peek_error(), 0u);
}

struct AlgCase {
  const char* alg;
  const EVP_MD* (*md)();
  bool pss;
  size_t ec_size;
};

TEST_F(LibCryptoTest, VerifiesSignaturesMadeByLibcrypto) {
  const std::string msg = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
  const std::vector<std::pair<AlgCase, KeyPair*>> cases = {
      {{"RS256", EVP_sha256, false, 0}, rsa()}, {{"RS384", EVP_sha384, false, 0}, rsa()},
      {{"RS512", EVP_sha512, false, 0}, rsa()}, {{"PS256", EVP_sha256, true, 0}, rsa()},
      {{"PS384", EVP_sha384, true, 0}, rsa()},  {{"PS512", EVP_sha512, true, 0}, rsa()},
      {{"ES256", EVP_sha256, false, 32}, p256()}, {{"ES384", EVP_sha384, false, 48}, p384()},
      {{"ES512", EVP_sha512, false, 66}, p521()}, {{"EdDSA", nullptr, false, 0}, ed25519()},
  };
  for (const auto& [c, key] : cases) {
    const EVP_MD* md = c.md ? c.md() : nullptr;
    std::string sig = cxx_sign(*key, md, c.pss, c.ec_size, msg);
    EXPECT_EQ(verify(c.alg, *key, msg, sig), "true") << c.alg;
    EXPECT_EQ(verify(c.alg, *key, msg + "x", sig), "false") << c.alg;  // other message
    std::string flipped = sig;
    flipped[flipped.size() / 2] ^= 0x01;
    EXPECT_EQ(verify(c.alg, *key, msg, flipped), "false") << c.alg;
    EXPECT_EQ(verify(c.alg, *key, msg, sig.substr(1)), "false") << c.alg;  // truncated
  }
}

TEST_F(LibCryptoTest, AnRsaSignatureShorterThanTheModulusIsRefusedEvenWithALeadingZeroCut) {
  // RFC 8017 §8.1.2 step 1. OpenSSL checks the length for PKCS #1 v1.5 but takes a short PSS
  // signature as the same number with leading zeros, so 1 PSS signature in 256 verified with
  // its first (zero) byte cut off. PSS signing is randomised: sign until one starts with 0
  // (bounded; ~256 tries expected).
  const std::string msg = "header.payload";
  std::string sig;
  for (int i = 0; i < 4096; ++i) {
    sig = cxx_sign(*rsa(), EVP_sha256(), true, 0, msg);
    if (!sig.empty() && sig[0] == '\0') break;
  }
  ASSERT_EQ(sig[0], '\0');
  EXPECT_EQ(verify("PS256", *rsa(), msg, sig), "true");
  EXPECT_EQ(verify("PS256", *rsa(), msg, sig.substr(1)), "false");
  // PKCS #1 v1.5 the same way (the message varied: its signatures are deterministic).
  std::string msg2;
  for (int i = 0; i < 4096; ++i) {
    msg2 = msg + std::to_string(i);
    sig = cxx_sign(*rsa(), EVP_sha256(), false, 0, msg2);
    if (!sig.empty() && sig[0] == '\0') break;
  }
  ASSERT_EQ(sig[0], '\0');
  EXPECT_EQ(verify("RS256", *rsa(), msg2, sig), "true");
  EXPECT_EQ(verify("RS256", *rsa(), msg2, sig.substr(1)), "false");
}

TEST_F(LibCryptoTest, PssAndPkcs1SignaturesAreNotInterchangeable) {
  const std::string msg = "header.payload";
  EXPECT_EQ(verify("PS256", *rsa(), msg, cxx_sign(*rsa(), EVP_sha256(), false, 0, msg)), "false");
  EXPECT_EQ(verify("RS256", *rsa(), msg, cxx_sign(*rsa(), EVP_sha256(), true, 0, msg)), "false");
}

TEST_F(LibCryptoTest, EcdsaSignatureWithHighBitsConvertsToDer) {
  // r and s with their top bit set need a leading zero in DER, and leading zero bytes are
  // dropped: sign until both kinds have been seen (each has probability about 1/2 or 1/128 per
  // signature; 3000 tries leave a chance of about 1e-10 of never seeing a leading zero).
  const std::string msg = "m";
  int high = 0, zero = 0;
  for (int i = 0; i < 3000 && (high == 0 || zero == 0); ++i) {
    std::string sig = cxx_sign(*p256(), EVP_sha256(), false, 32, msg + std::to_string(i));
    high += static_cast<unsigned char>(sig[0]) >= 0x80;
    zero += sig[0] == '\0' || sig[32] == '\0';
    ASSERT_EQ(verify("ES256", *p256(), msg + std::to_string(i), sig), "true") << i;
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(zero, 0);
}

TEST_F(LibCryptoTest, SignaturesMadeInLuaVerifyInLibcrypto) {
  for (const auto& [alg, key, md, ec] :
       {std::tuple{"RS256", rsa(), EVP_sha256(), 0}, std::tuple{"PS384", rsa(), EVP_sha384(), 0},
        std::tuple{"ES256", p256(), EVP_sha256(), 32}, std::tuple{"ES512", p521(), EVP_sha512(), 66}}) {
    // As hex: run_chunk's result stops at a NUL byte.
    std::string sig = from_hex(run("local sig = assert(crypto.sign('" + std::string(alg) +
                                   "', [[" + key->private_pem + "]], 'a.b'))\n"
                                   "return crypto.hex(sig)"));
    std::string der = sig;
    if (ec) {  // r || s back to DER for libcrypto
      ECDSA_SIG* es = ECDSA_SIG_new();
      ECDSA_SIG_set0(es, BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), ec, nullptr),
                     BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + ec, ec, nullptr));
      unsigned char* p = nullptr;
      int len = i2d_ECDSA_SIG(es, &p);
      der.assign(reinterpret_cast<char*>(p), len);
      OPENSSL_free(p);
      ECDSA_SIG_free(es);
      EXPECT_EQ(sig.size(), 2u * ec);
    }
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    EVP_DigestVerifyInit(ctx, &pctx, md, nullptr, key->pkey);
    if (alg[0] == 'P') {
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
    }
    EXPECT_EQ(EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(der.data()), der.size(),
                               reinterpret_cast<const unsigned char*>("a.b"), 3),
              1)
        << alg;
    EVP_MD_CTX_free(ctx);
  }
}

TEST_F(LibCryptoTest, KeyThatDoesNotFitTheAlgorithmIsRefused) {
  std::string sig(64, 'x');
  EXPECT_EQ(verify("ES256", *rsa(), "m", sig), "nil an RSA key cannot check ES256");
  EXPECT_EQ(verify("RS256", *p256(), "m", sig), "nil an EC key cannot check RS256");
  EXPECT_EQ(verify("ES256", *p384(), "m", sig), "nil an EC secp384r1 key cannot check ES256");
  EXPECT_EQ(verify("ES384", *p256(), "m", sig), "nil an EC prime256v1 key cannot check ES384");
  EXPECT_EQ(verify("EdDSA", *p256(), "m", sig), "nil an EC key cannot check EdDSA");
  EXPECT_EQ(verify("RS256", *rsa_small(), "m", sig),
            "nil RSA keys shorter than 2048 bits are refused");
  EXPECT_EQ(verify("HS256", *rsa(), "m", sig), "nil unsupported algorithm HS256");
  EXPECT_EQ(verify("none", *rsa(), "m", sig), "nil unsupported algorithm none");
  EXPECT_EQ(run("return select(2, crypto.verify('RS256', 'pem text', 'm', 's'))"),
            "expected a key from crypto.public_key");
}

// A key's JWK members as hex (the Lua side base64url-encodes them): RSA n and e, EC x and y
// padded to the coordinate size, OKP x.
std::string bn_hex(const EVP_PKEY* pkey, const char* name, int pad) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(pkey, name, &bn), 1) << name;
  std::string bytes(pad ? pad : BN_num_bytes(bn), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  BN_free(bn);
  std::string hex;
  char b[3];
  for (unsigned char c : bytes) {
    std::snprintf(b, sizeof b, "%02x", c);
    hex += b;
  }
  return hex;
}

std::string okp_hex(const EVP_PKEY* pkey) {
  unsigned char pub[64];
  size_t len = 0;
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(pkey, "pub", pub, sizeof pub, &len), 1);
  std::string hex;
  char b[3];
  for (size_t i = 0; i < len; ++i) {
    std::snprintf(b, sizeof b, "%02x", pub[i]);
    hex += b;
  }
  return hex;
}

// Lua that builds `jwk` from hex members and checks `sig` (hex) over "h.p" with `alg`.
std::string jwk_verify_source(const std::string& members, const std::string& alg,
                              const std::string& sig) {
  return "local base64 = require 'turnpike.base64'\n"
         "local function b64(hex) return base64.encode_url((hex:gsub('..', function(h)\n"
         "  return string.char(tonumber(h, 16)) end))) end\n"
         "local function bytes(hex) return (hex:gsub('..', function(h)\n"
         "  return string.char(tonumber(h, 16)) end)) end\n"
         "local jwk = " + members + "\n"
         "local key, err = crypto.public_key_jwk(jwk)\n"
         "if not key then return 'nil ' .. err end\n"
         "return tostring(crypto.verify('" + alg + "', key, 'h.p', bytes('" + sig + "')))";
}

std::string hex_of(const std::string& s) {
  std::string hex;
  char b[3];
  for (unsigned char c : s) {
    std::snprintf(b, sizeof b, "%02x", c);
    hex += b;
  }
  return hex;
}

TEST_F(LibCryptoTest, JwkKeysVerifyWhatTheirPemTwinsVerify) {
  std::string rsa_jwk = "{ kty = 'RSA', n = b64('" + bn_hex(rsa()->pkey, "n", 0) + "'), e = b64('" +
                        bn_hex(rsa()->pkey, "e", 0) + "') }";
  std::string rs = hex_of(cxx_sign(*rsa(), EVP_sha256(), false, 0, "h.p"));
  EXPECT_EQ(run(jwk_verify_source(rsa_jwk, "RS256", rs)), "true");
  EXPECT_EQ(run(jwk_verify_source(rsa_jwk, "RS256", "00" + rs.substr(2))), "false");
  for (const auto& [crv, key, md, size, alg] :
       {std::tuple{"P-256", p256(), EVP_sha256(), 32, "ES256"},
        std::tuple{"P-384", p384(), EVP_sha384(), 48, "ES384"},
        std::tuple{"P-521", p521(), EVP_sha512(), 66, "ES512"}}) {
    std::string jwk = std::string("{ kty = 'EC', crv = '") + crv + "', x = b64('" +
                      bn_hex(key->pkey, "qx", size) + "'), y = b64('" +
                      bn_hex(key->pkey, "qy", size) + "') }";
    std::string es = hex_of(cxx_sign(*key, md, false, size, "h.p"));
    EXPECT_EQ(run(jwk_verify_source(jwk, alg, es)), "true") << crv;
  }
  std::string ed = "{ kty = 'OKP', crv = 'Ed25519', x = b64('" + okp_hex(ed25519()->pkey) + "') }";
  EXPECT_EQ(run(jwk_verify_source(ed, "EdDSA", hex_of(cxx_sign(*ed25519(), nullptr, false, 0,
                                                                  "h.p")))),
            "true");
}

TEST_F(LibCryptoTest, BadJwkSaysWhy) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{ kty = 'oct', k = 'c2VjcmV0' }", "jwk: unsupported kty oct (expected RSA, EC or OKP)"},
      {"{ kty = 'RSA', e = 'AQAB' }", "jwk: 'n' missing"},
      {"{ kty = 'RSA', n = 'a*b', e = 'AQAB' }", "jwk: 'n' is not base64url"},
      {"{ kty = 'EC', crv = 'P-192', x = 'AA', y = 'AA' }", "jwk: unsupported EC curve P-192"},
      {"{ kty = 'EC', crv = 'P-256', x = 'AAAA', y = 'AAAA' }",
       "jwk: x and y must be 32 bytes for P-256"},
      // The right sizes, but not a point on the curve: OpenSSL refuses it.
      {"{ kty = 'EC', crv = 'P-256', x = ('A'):rep(43), y = ('A'):rep(42) .. 'E' }",
       "jwk: invalid key: "},
      {"'{\"kty\": '", "jwk: unexpected end of text at byte 9"},
  };
  for (const auto& [jwk, message] : cases) {
    std::string got = run("local k, err = crypto.public_key_jwk(" + jwk + ") return tostring(k) .. ' ' .. err");
    EXPECT_EQ(got.substr(0, 4 + message.size()), "nil " + message) << jwk;
  }
}

TEST_F(LibCryptoTest, KeysAreFreedByTheGarbageCollector) {
  // Each parse makes an EVP_PKEY outside the Lua heap; ffi.gc frees it. Without that, LSan
  // reports the keys when the test binary exits.
  EXPECT_EQ(run("for i = 1, 200 do assert(crypto.public_key([[" + p256()->public_pem +
                "]])) end\ncollectgarbage() collectgarbage() return 'ok'"),
            "ok");
}

TEST_F(LibCryptoTest, UserPluginsCanRequireIt) {
  write_plugin("signed", plugin_source("signed", "access", R"(
    local crypto = require 'turnpike.crypto'
    turnpike.exit(200, crypto.hex(crypto.hmac('sha256', 'Jefe', 'what do ya want for nothing?'))))"));
  auto gen = load({"signed"});
  Ref ctx = vm().new_ctx();
  CallResult r = run_call(gen, 0, Phase::access, Ref(), ctx);
  EXPECT_EQ(r.status, CallStatus::exit) << r.error;
  EXPECT_EQ(r.exit_body, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

}  // namespace
}  // namespace turnpike::lua::test
