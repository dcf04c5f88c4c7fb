// How per-request PDK calls should reach C++: LuaJIT FFI calls through the function pointers of
// pdk.h (what turnpike.lua does) against classic lua_CFunctions, each in JIT-compiled (bundled)
// and interpreted (user) plugin code; and the cost of one Vm::call of an empty phase function.
// Prints ns per call; asserts only that the calls work (no timing assertions). Figures from a
// Release build are in docs/plugins.md.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <chrono>
#include <cstdio>

#include "fake_request.h"
#include "lua_test_util.h"
#include "turnpike/lua/shared_dict.h"

namespace turnpike::lua::test {
namespace {

namespace asio = boost::asio;

// The loop every case runs: ns per iteration of `op()`, then of the empty loop.
const char* kBenchLoop = R"(
  local n = 2000000
  local t0 = os.clock()
  for i = 1, n do op() end
  local t1 = os.clock()
  for i = 1, n do end
  local t2 = os.clock()
  return string.format('%.1f %.1f', (t1 - t0) * 1e9 / n, (t2 - t1) * 1e9 / n)
)";

class PdkTransportBench : public LuaTest {
 protected:
  void SetUp() override {
    LuaTest::SetUp();
    // A bundled directory of our own (its lib/ is the real one) makes the bench plugin trusted,
    // i.e. JIT-compiled, like the plugins shipped with the gateway.
    bundled_ = dir_ / "bundled";
    std::filesystem::create_directories(bundled_);
    std::filesystem::create_directory_symlink(std::filesystem::path(TURNPIKE_PLUGINS_DIR) / "lib",
                                              bundled_ / "lib");
    VmConfig cfg;
    cfg.bundled_dir = bundled_.string();
    cfg.plugin_paths.push_back(dir_.string());
    cfg.instruction_budget = 1'000'000'000;  // the interpreted loops are long
    dicts_.add("limits", 1 << 20);
    cfg.shared_dicts = ffi_handle(dicts_);
    std::string error;
    vm_ = Vm::create(cfg, error);
    ASSERT_TRUE(vm_) << error;
    vm_->set_request_api(&fake_request_api());
    request_.headers["x-api-key"] = "secret-key-1";
  }
  void TearDown() override {
    gen_.reset();
    LuaTest::TearDown();
  }

  // Runs the loop over `op` (defined by `setup`), in a plugin that is trusted (JIT) or not.
  std::string measure(const std::string& setup, bool trusted) {
    std::string check = setup + "\n";
    std::string name = trusted ? "bench_jit" : "bench_interp";
    std::string source = "local M = { name = '" + name + "', priority = 1, schema = {} }\n"
                         "function M.access(conf, ctx)\n" + check + kBenchLoop +
                         "end\nfunction M.log(conf, ctx) M.result = M.access(conf, ctx) end\n"
                         "return M\n";
    std::ofstream((trusted ? bundled_ : dir_) / (name + ".lua")) << source;
    gen_ = load({name});
    Ref ctx = vm().new_ctx();
    CallResult r = run_call(gen_, 0, Phase::log, Ref(), ctx, &request_);
    EXPECT_EQ(r.status, CallStatus::ok) << r.error;
    return eval("return require('" + name + "').result");
  }

  SharedDicts dicts_;
  std::filesystem::path bundled_;
  tp_request request_;
  std::shared_ptr<const Generation> gen_;
};

// Both bindings, whichever `require "turnpike"` would give the plugin; each setup asserts that
// its operation works (a miss would measure the wrong thing).
const std::string kFfi = "local pdk = require('turnpike.interpreted') and package.loaded['turnpike']\n";
const std::string kCFunction = "local pdk = require('turnpike.interpreted')\n";
const std::string kGetHeader = "local get = pdk.request.get_header\n"
                               "local function op() return get('x-api-key') end\n"
                               "assert(op() == 'secret-key-1')\n";
const std::string kIncr = "local dict = pdk.shared.limits\n"
                          "local function op() return dict:incr('hits', 1, 0) end\n"
                          "assert(op() >= 1)\n";

TEST_F(PdkTransportBench, PdkCallsNsPerCall) {
  for (auto [what, op] : {std::pair{"request.get_header('x-api-key')", kGetHeader},
                          std::pair{"shared.limits:incr('hits', 1, 0)", kIncr}}) {
    std::printf("%s, ns/call (then the empty loop):\n", what);
    std::printf("  ffi        jit on : %s\n", measure(kFfi + op, true).c_str());
    std::printf("  cfunction  jit on : %s\n", measure(kCFunction + op, true).c_str());
    std::printf("  ffi        jit off: %s\n", measure(kFfi + op, false).c_str());
    std::printf("  cfunction  jit off: %s\n", measure(kCFunction + op, false).c_str());
  }
}

TEST_F(PdkTransportBench, EmptyPhaseCallNsPerCall) {
  write_plugin("empty", plugin_source("empty", "access", ""));
  gen_ = load({"empty"});
  asio::io_context io;
  const int n = 200'000;
  int ok = 0;
  auto start = std::chrono::steady_clock::now();
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    Ref ctx = vm().new_ctx();
    for (int i = 0; i < n; ++i) {
      CallResult r = co_await vm().call(gen_, 0, Phase::access, Ref(), ctx, &request_);
      ok += r.status == CallStatus::ok;
    }
  }, asio::detached);
  io.run();
  auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
  std::printf("Vm::call of an empty phase function: %.0f ns/call\n", ns.count() / n);
  EXPECT_EQ(ok, n);
}

// How long the default instruction budget lets an endless interpreted loop run.
TEST(BudgetBench, DefaultBudgetCutOffTime) {
  VmConfig cfg;
  cfg.bundled_dir = TURNPIKE_PLUGINS_DIR;
  std::string error;
  auto vm = Vm::create(cfg, error);
  ASSERT_TRUE(vm) << error;
  for (const char* loop : {"while true do end", "local t = {} while true do t[1] = #t end"}) {
    auto start = std::chrono::steady_clock::now();
    vm->run_chunk(std::string("load('") + loop + "')()", error);
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    std::printf("default budget (%llu instructions) stops `%s` after %.1f ms\n",
                static_cast<unsigned long long>(cfg.instruction_budget), loop, ms.count());
    EXPECT_NE(error.find("instruction budget exceeded"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace turnpike::lua::test
