// turnpike.timer: one-shot and periodic timers on the Vm's io_context, their arguments, cancel,
// errors that stay in the timer, the pending cap, and the end of a timer's life: retired with its
// plugin generation, or stopped with the worker, both with one premature run.
#include <chrono>

#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

class TimerTest : public LuaTest {
 protected:
  void SetUp() override {
    LuaTest::SetUp();
    vm().set_io(&io_);
  }
  void TearDown() override {
    gen_.reset();
    vm_.reset();  // before io_: pending timers are bound to it
    LuaTest::TearDown();
  }
  // Runs the loop until `done` says so (or `limit` passes); false on the limit.
  template <class Done>
  bool run_until(Done done, std::chrono::milliseconds limit = 3000ms) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < end) {
      io_.restart();
      io_.run_for(5ms);
    }
    return done();
  }
  int counter(const std::string& name) { return std::stoi(eval("return tostring(" + name + " or 0)")); }

  asio::io_context io_;  // declared before the Vm (LuaTest's vm_ is reset first in TearDown)
  std::shared_ptr<const Generation> gen_;
};

TEST_F(TimerTest, AtRunsOnceWithItsArgumentsAndNotPremature) {
  eval(R"(
    local turnpike = require 'turnpike'
    assert(turnpike.timer.at(0.01, function(premature, a, b)
      seen = tostring(premature) .. ' ' .. a .. ' ' .. tostring(b)
      runs = (runs or 0) + 1
    end, 'x', 42))
    return 'ok')");
  EXPECT_EQ(vm().pending_timers(), 1u);
  ASSERT_TRUE(run_until([&] { return counter("runs") == 1; }));
  EXPECT_EQ(eval("return seen"), "false x 42");
  io_.restart();
  io_.run_for(50ms);
  EXPECT_EQ(counter("runs"), 1);
  EXPECT_EQ(vm().pending_timers(), 0u);
  EXPECT_EQ(vm().live_calls(), 0u);
}

TEST_F(TimerTest, EveryRepeatsUntilCancelled) {
  eval(R"(
    local turnpike = require 'turnpike'
    ticks = 0
    handle = turnpike.timer.every(0.005, function() ticks = ticks + 1 end)
    return 'ok')");
  ASSERT_TRUE(run_until([&] { return counter("ticks") >= 3; }));
  EXPECT_EQ(eval("return tostring(handle:cancel())"), "true");
  EXPECT_EQ(eval("return tostring(handle:cancel())"), "false");  // already ended
  const int at_cancel = counter("ticks");
  io_.restart();
  io_.run_for(50ms);
  EXPECT_EQ(counter("ticks"), at_cancel);
  EXPECT_EQ(vm().pending_timers(), 0u);
}

TEST_F(TimerTest, CallbacksMaySleepAndRunsDoNotOverlap) {
  eval(R"(
    local turnpike = require 'turnpike'
    active, most, done = 0, 0, 0
    handle = turnpike.timer.every(0.001, function()
      active = active + 1
      if active > most then most = active end
      turnpike.sleep(0.01)
      active = active - 1
      done = done + 1
    end)
    return 'ok')");
  ASSERT_TRUE(run_until([&] { return counter("done") >= 3; }));
  EXPECT_EQ(counter("most"), 1);
  eval("handle:cancel() return 'ok'");
  ASSERT_TRUE(run_until([&] { return vm().pending_timers() == 0; }));
}

TEST_F(TimerTest, AnErrorEndsThatRunOnly) {
  eval(R"(
    local turnpike = require 'turnpike'
    tries = 0
    handle = turnpike.timer.every(0.002, function()
      tries = tries + 1
      error('boom')
    end)
    return 'ok')");
  ASSERT_TRUE(run_until([&] { return counter("tries") >= 3; }));  // still periodic after errors
  eval("handle:cancel() return 'ok'");
  ASSERT_TRUE(run_until([&] { return vm().pending_timers() == 0; }));
  EXPECT_EQ(vm().live_calls(), 0u);
}

TEST_F(TimerTest, BadArgumentsAndTheCap) {
  EXPECT_EQ(eval(R"(
    local turnpike = require 'turnpike'
    local ok = pcall(turnpike.timer.at, 1, 'not a function')
    local h, err = turnpike.timer.every(0, function() end)
    return tostring(ok) .. ' ' .. tostring(h) .. ' ' .. err)"),
            "false nil interval must be a number > 0");
  EXPECT_EQ(eval(R"(
    local turnpike = require 'turnpike'
    local made, err = 0
    for i = 1, 2000 do
      local h, e = turnpike.timer.at(60, function() end)
      if not h then err = e break end
      made = made + 1
    end
    return made .. ' ' .. err)"),
            "1024 too many pending timers (1024 per worker)");
}

TEST_F(TimerTest, StopRunsPendingTimersPrematurelyAndRefusesNewOnes) {
  eval(R"(
    local turnpike = require 'turnpike'
    flushed = 0
    turnpike.timer.at(60, function(premature) if premature then flushed = flushed + 1 end end)
    turnpike.timer.every(60, function(premature) if premature then flushed = flushed + 1 end end)
    return 'ok')");
  vm().stop_timers();
  ASSERT_TRUE(run_until([&] { return counter("flushed") == 2; }));
  EXPECT_EQ(vm().pending_timers(), 0u);
  EXPECT_EQ(eval(R"(
    local h, err = require('turnpike').timer.at(0, function() end)
    return tostring(h) .. ' ' .. err)"),
            "nil the worker is stopping");
}

TEST_F(TimerTest, RetiringTheGenerationEndsItsTimers) {
  write_plugin("ticker", R"(
    local turnpike = require 'turnpike'
    local M = { name = 'ticker', priority = 1, schema = { type = 'object' } }
    function M.init_worker()
      turnpike.timer.every(0.002, function(premature)
        if premature then M.last_was_premature = true return end
        M.ticks = (M.ticks or 0) + 1
      end)
    end
    return M)");
  gen_ = load({"ticker"});
  Ref none;
  ASSERT_EQ(run_call(gen_, 0, Phase::init_worker, none, none).status, CallStatus::ok);
  // The plugin's own globals are its own (docs/plugins.md): read them through its module table,
  // which this test holds on to past the generation.
  eval("held = require('ticker') return 'ok'");
  ASSERT_TRUE(run_until([&] { return counter("held.ticks") >= 2; }));
  gen_.reset();  // a reload loaded the code afresh
  ASSERT_TRUE(run_until([&] { return vm().pending_timers() == 0; }));
  EXPECT_EQ(eval("return tostring(held.last_was_premature)"), "true");
  const int at_retire = counter("held.ticks");
  io_.restart();
  io_.run_for(30ms);
  EXPECT_EQ(counter("held.ticks"), at_retire);
}

}  // namespace
}  // namespace turnpike::lua::test
