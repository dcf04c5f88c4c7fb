// A plugin's failure is its call's failure: an error comes back with plugin, phase and traceback;
// an endless loop is cut off by the instruction budget; an allocation bomb hits the memory cap.
// After each the Vm serves the next call, and nothing is left behind.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

namespace asio = boost::asio;

class IsolationTest : public LuaTest {
 protected:
  void SetUp() override {
    LuaTest::SetUp();
    config_.instruction_budget = 2'000'000;
    config_.memory_limit = 16u << 20;
    write_plugin("healthy", plugin_source("healthy", "access", "ctx.done = true"));
  }
  void TearDown() override {
    gen_.reset();
    LuaTest::TearDown();
  }
  void load_hostile(const std::string& body) {
    write_plugin("hostile", plugin_source("hostile", "access", body));
    gen_ = load({"hostile", "healthy"});
  }
  CallResult call(size_t plugin) {
    Ref ctx = vm().new_ctx();
    return run_call(gen_, plugin, Phase::access, Ref(), ctx);
  }
  // The Vm still runs plugin code after whatever the hostile plugin did.
  void expect_usable() {
    CallResult r = call(1);
    EXPECT_EQ(r.status, CallStatus::ok) << r.error;
  }
  std::shared_ptr<const Generation> gen_;
};

TEST_F(IsolationTest, ErrorComesBackWithPluginPhaseAndTraceback) {
  load_hostile("local function check(v) error('bad credential: ' .. v) end\ncheck('k')");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_EQ(r.error.rfind("plugin \"hostile\" access: ", 0), 0u) << r.error;
  // plugin_source() puts the body on the module's fourth line.
  EXPECT_NE(r.error.find("hostile.lua:4: bad credential: k"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("stack traceback:"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("in function 'check'"), std::string::npos) << r.error;
  expect_usable();
}

TEST_F(IsolationTest, ErrorWithANonStringValueIsDescribed) {
  load_hostile("error({ code = 1 })");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("error object is not a string"), std::string::npos) << r.error;
}

TEST_F(IsolationTest, TenThousandFailingCallsLeakNothing) {
  load_hostile("local t = {} for i = 1, 20 do t[i] = ('x'):rep(100) .. i end\n"
               "ctx.garbage = t\nerror('always')");
  // Warm up once (first-call allocations such as interned strings), then take the baseline.
  EXPECT_EQ(call(0).status, CallStatus::error);
  vm().collect_garbage();
  size_t refs = vm().live_refs();
  size_t memory = vm().memory_used();

  asio::io_context io;
  int errors = 0;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 10'000; ++i) {
      Ref ctx = vm().new_ctx();
      CallResult r = co_await vm().call(gen_, 0, Phase::access, Ref(), ctx, nullptr);
      errors += r.status == CallStatus::error;
    }
  }, asio::detached);
  io.run();
  EXPECT_EQ(errors, 10'000);
  EXPECT_EQ(vm().live_calls(), 0u);
  EXPECT_EQ(vm().live_refs(), refs);
  vm().collect_garbage();
  // Lua's heap returns to the baseline; the slack covers the registry's free-slot list and
  // string-table growth, far less than the ~40 MB the calls allocated.
  EXPECT_LT(vm().memory_used(), memory + (64u << 10)) << "baseline " << memory;
}

TEST_F(IsolationTest, EndlessLoopIsCutOffByTheBudget) {
  load_hostile("local n = 0\nwhile true do n = n + 1 end");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("instruction budget exceeded (2000000 instructions)"), std::string::npos)
      << r.error;
  expect_usable();
}

TEST_F(IsolationTest, LoopThatCatchesTheBudgetErrorIsStillCutOff) {
  load_hostile("while true do pcall(function() while true do end end) end");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("instruction budget exceeded"), std::string::npos) << r.error;
  expect_usable();
}

TEST_F(IsolationTest, BudgetCountsAcrossSleeps) {
  // Each slice stays under the budget; together they exceed it.
  load_hostile("for round = 1, 100 do\n"
               "  local n = 0 for i = 1, 100000 do n = n + i end\n"
               "  turnpike.sleep(0)\nend");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("instruction budget exceeded"), std::string::npos) << r.error;
}

TEST_F(IsolationTest, CodeLoadedAtRunTimeIsBudgetedToo) {
  load_hostile("load('while true do end')()");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("instruction budget exceeded"), std::string::npos) << r.error;
}

// The measurement behind interpreting user code: the same hot loop, JIT-compiled (a trusted
// chunk), never reaches the count hook and finishes far beyond the budget.
TEST_F(IsolationTest, CompiledLoopsDoNotSeeTheCountHook) {
  EXPECT_EQ(eval("local n = 0 for i = 1, 20000000 do n = n + 1 end return n"), "20000000");
  std::string error;
  vm().run_chunk("return load('local n = 0 for i = 1, 20000000 do n = n + 1 end return n')()",
                 error);
  EXPECT_NE(error.find("instruction budget exceeded"), std::string::npos) << error;
}

TEST_F(IsolationTest, AllocationBombHitsTheMemoryCap) {
  load_hostile("local t = {}\nfor i = 1, 1e9 do t[i] = ('y'):rep(1000) .. i end");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("memory limit of 16777216 bytes reached"), std::string::npos) << r.error;
  vm().collect_garbage();
  EXPECT_LT(vm().memory_used(), 4u << 20);
  expect_usable();
}

// A plugin that keeps what it allocated holds the heap at the cap. Its calls keep failing, but
// the runtime's own work (ctx tables, threads, loading) must not: an allocation error outside a
// protected call would end the process.
TEST_F(IsolationTest, HeapHeldAtTheCapFailsCallsNotTheProcess) {
  load_hostile("local hoard = require('hostile').hoard\n"
               "for i = 1, 1e9 do hoard[#hoard + 1] = ('h'):rep(1000) .. i end");
  eval("require('hostile').hoard = {}");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("memory limit"), std::string::npos) << r.error;
  std::vector<Ref> ctxs;
  for (int i = 0; i < 2000; ++i) ctxs.push_back(vm().new_ctx());
  std::vector<std::string> errors;
  write_plugin("other", plugin_source("other", "access", ""));
  auto other = vm().load({"other"}, errors);  // may fail for memory, must not crash
  CallResult second = call(0);
  EXPECT_EQ(second.status, CallStatus::error);
  EXPECT_EQ(vm().live_calls(), 0u);
}

TEST_F(IsolationTest, OneStringAllocationBeyondTheCapFails) {
  load_hostile("local s = ('z'):rep(64 * 1024 * 1024)");
  CallResult r = call(0);
  ASSERT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("memory limit"), std::string::npos) << r.error;
  expect_usable();
}

}  // namespace
}  // namespace turnpike::lua::test
