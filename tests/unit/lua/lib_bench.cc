// What the library modules cost per call (turnpike.json, base64, crypto, regex, limit), called from a
// bundled plugin (JIT on) and from a user plugin (interpreted caller; the library's own code is
// compiled either way). Prints ns per call; asserts only that each operation works (no timing
// assertions). Figures from a Release build are in docs/plugins.md, "Library modules".
#include <cstdio>

#include "lua_test_util.h"
#include "test_keys.h"

namespace turnpike::lua::test {
namespace {

// A typical access token's claims: 340 bytes.
const char* kClaims =
    R"({"iss":"https://auth.example.com/","sub":"auth0|5f8a7c3e2b1d4e0069a1b2c3",)"
    R"("aud":["https://api.example.com","https://example.eu.auth0.com/userinfo"],)"
    R"("iat":1767222000,"exp":1767308400,"azp":"kX9pQ2mZ7rT4vB8nW1yL3cF6hJ0dS5gA",)"
    R"("scope":"openid profile email read:orders","permissions":["read:orders",)"
    R"("write:orders"],"name":"Alice Example"})";

// Under the sanitizers the figures mean nothing and the loops take minutes: run them briefly,
// only to check that the operations work.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kScale = 50;
#else
constexpr int kScale = 1;
#endif

class LibBench : public LuaTest {
 protected:
  void SetUp() override {
    LuaTest::SetUp();
    // A bundled directory of our own (its lib/ is the real one) makes a plugin trusted.
    bundled_ = dir_ / "bundled";
    std::filesystem::create_directories(bundled_);
    std::filesystem::create_directory_symlink(std::filesystem::path(TURNPIKE_PLUGINS_DIR) / "lib",
                                              bundled_ / "lib");
    VmConfig cfg;
    cfg.bundled_dir = bundled_.string();
    cfg.plugin_paths.push_back(dir_.string());
    cfg.instruction_budget = 4'000'000'000;  // the interpreted loops are long
    std::string error;
    vm_ = Vm::create(cfg, error);
    ASSERT_TRUE(vm_) << error;
  }
  void TearDown() override {
    gen_.reset();
    LuaTest::TearDown();
  }

  // ns per call of `op` (defined with its data by `setup`, which also checks that it works),
  // run `n` times in the log phase of a trusted or untrusted plugin.
  std::string measure(const std::string& setup, int n, bool trusted) {
    std::string name = trusted ? "bench_jit" : "bench_interp";
    std::string source =
        "local M = { name = '" + name + "', priority = 1, schema = {} }\n"
        "function M.log(conf, ctx)\n" + setup + "\n"
        "  local n = " + std::to_string(n / kScale) + "\n"
        "  for i = 1, n / 10 do op() end  -- warm up, let the JIT compile\n"
        "  local t0 = os.clock()\n"
        "  for i = 1, n do op() end\n"
        "  M.result = string.format('%.0f', (os.clock() - t0) * 1e9 / n)\n"
        "end\nreturn M\n";
    std::ofstream((trusted ? bundled_ : dir_) / (name + ".lua")) << source;
    gen_ = load({name});
    Ref ctx = vm().new_ctx();
    CallResult r = run_call(gen_, 0, Phase::log, Ref(), ctx);
    EXPECT_EQ(r.status, CallStatus::ok) << r.error;
    return eval("return require('" + name + "').result");
  }

  void report(const char* what, const std::string& setup, int n) {
    std::printf("%-44s jit %8s ns   interpreted caller %8s ns\n", what,
                measure(setup, n, true).c_str(), measure(setup, n, false).c_str());
  }

  std::filesystem::path bundled_;
  std::shared_ptr<const Generation> gen_;
};

TEST_F(LibBench, JsonAndBase64NsPerCall) {
  std::string claims = std::string("local claims = [[") + kClaims + "]]\n";
  report("json.decode (340-byte JWT claims)",
         "local json = require 'turnpike.json'\n" + claims +
             "local function op() return json.decode(claims) end\n"
             "assert(op().sub == 'auth0|5f8a7c3e2b1d4e0069a1b2c3')",
         100000);
  report("json.encode (the same claims)",
         "local json = require 'turnpike.json'\n" + claims +
             "local value = json.decode(claims)\n"
             "local function op() return json.encode(value) end\n"
             "assert(#op() == #claims)",
         100000);
  report("base64.decode_url (456-char JWT segment)",
         "local base64 = require 'turnpike.base64'\n" + claims +
             "local segment = base64.encode_url(claims)\n"
             "local function op() return base64.decode_url(segment) end\n"
             "assert(op() == claims)",
         200000);
}

TEST_F(LibBench, CryptoNsPerCall) {
  KeyPair rsa = make_key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  KeyPair p256 = make_key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  std::string input = std::string("local input = ('x'):rep(450)\n");
  report("crypto.sha256 (450 bytes)",
         "local crypto = require 'turnpike.crypto'\n" + input +
             "local function op() return crypto.sha256(input) end\n"
             "assert(#op() == 32)",
         200000);
  report("crypto.hmac sha256 (450 bytes, 32-byte key)",
         "local crypto = require 'turnpike.crypto'\n" + input +
             "local key = ('k'):rep(32)\n"
             "local function op() return crypto.hmac('sha256', key, input) end\n"
             "assert(#op() == 32)",
         200000);
  for (const auto& [alg, key, n] : {std::tuple{"RS256", &rsa, 20000}, std::tuple{"ES256", &p256, 5000}}) {
    report((std::string("crypto.verify ") + alg + " (2048-bit / P-256)").c_str(),
           "local crypto = require 'turnpike.crypto'\n" + input +
               "local key = assert(crypto.public_key([[" + key->public_pem + "]]))\n"
               "local sig = assert(crypto.sign('" + alg + "', [[" + key->private_pem + "]], input))\n"
               "local function op() return crypto.verify('" + alg + "', key, input, sig) end\n"
               "assert(op() == true)",
           n);
  }
  EVP_PKEY_free(rsa.pkey);
  EVP_PKEY_free(p256.pkey);
}

TEST_F(LibBench, RegexNsPerCall) {
  report("regex match, 2 named captures (path)",
         "local re = assert(require('turnpike.regex').compile([[^/users/(?<id>\\d+)/orders/(?<order>\\w+)$]]))\n"
         "local function op() return re:match('/users/42/orders/a7b9') end\n"
         "assert(op().order == 'a7b9')",
         500000);
  report("regex find, caseless (no allocation)",
         "local re = assert(require('turnpike.regex').compile('bearer\\\\s+', 'i'))\n"
         "local function op() return re:find('Authorization: Bearer abc.def.ghi') end\n"
         "assert(op() == 16)",
         500000);
}

// turnpike.limit (src/lua/limiter.cc): one counter step per call, on one hot key and spread over
// 100,000 keys (a table far larger than the caches).
TEST_F(LibBench, LimitNsPerCall) {
  const std::string lib = "local limit = require 'turnpike.limit'\n"
                          "local scope = 'limit-count/0123456789abcdef/route:api'\n";
  report("limit.fixed_window (one key)",
         lib + "local function op() return limit.fixed_window(scope, 'alice', 1e12, 60) end\n"
               "assert(op() == true)",
         1000000);
  report("limit.fixed_window (100,000 keys)",
         lib + "local keys = {} for i = 1, 100000 do keys[i] = 'client-' .. i end\n"
               "local i = 0\n"
               "local function op() i = i % 100000 + 1 return limit.fixed_window(scope, keys[i], 1e12, 60) end\n"
               "assert(op() == true)",
         1000000);
  report("limit.sliding_window (one key)",
         lib + "local function op() return limit.sliding_window(scope, 'alice', 1e12, 60) end\n"
               "assert(op() == true)",
         1000000);
  report("limit.leaky_bucket (one key)",
         lib + "local function op() return limit.leaky_bucket(scope, 'alice', 1e9, 1e9) end\n"
               "assert(op() == true)",
         1000000);
  report("limit.conn_enter + conn_leave (one key)",
         lib + "local function op() local ok = limit.conn_enter(scope, 'alice', 1e9) limit.conn_leave(scope, 'alice') return ok end\n"
               "assert(op() == true)",
         1000000);
}

}  // namespace
}  // namespace turnpike::lua::test
