// Calls into phase functions: arguments, the shared ctx, turnpike.sleep yielding to the
// io_context while other calls run, turnpike.exit, a call abandoned mid-wait, and the request
// functions of the PDK against a fake request.
#include <boost/asio/detached.hpp>

#include "fake_request.h"
#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

namespace asio = boost::asio;

class CallTest : public LuaTest {
 protected:
  void TearDown() override {
    gen_.reset();
    LuaTest::TearDown();
  }
  // Loads one plugin `name` whose `phase` function has `body`.
  void load_one(const std::string& name, const std::string& phase, const std::string& body) {
    write_plugin(name, plugin_source(name, phase, body));
    gen_ = load({name});
  }
  CallResult call(Phase phase, tp_request* request = nullptr) {
    Ref ctx = vm().new_ctx();
    return run_call(gen_, 0, phase, Ref(), ctx, request);
  }
  std::shared_ptr<const Generation> gen_;
};

TEST_F(CallTest, ReturnsOkAndSeesConfAndCtx) {
  write_plugin("p", R"(
    local M = { name = 'p', priority = 1, schema = { type = 'object' } }
    function M.rewrite(conf, ctx) ctx.seen = conf.greeting end
    function M.access(conf, ctx) M.result = ctx.seen .. ' again' end
    return M)");
  gen_ = load({"p"});
  std::vector<std::string> errors;
  Ref conf = vm().check_conf_source(*gen_, 0, "{ greeting = 'hello' }", errors);
  Ref ctx = vm().new_ctx();
  EXPECT_EQ(run_call(gen_, 0, Phase::rewrite, conf, ctx).status, CallStatus::ok);
  EXPECT_EQ(run_call(gen_, 0, Phase::access, conf, ctx).status, CallStatus::ok);
  EXPECT_EQ(eval("return require('p').result"), "hello again");
}

TEST_F(CallTest, ReturnedCallsReuseTheirThreadAndFailedOnesDoNot) {
  write_plugin("p", R"(
    local M = { name = 'p', priority = 1, schema = {}, calls = 0 }
    function M.access(conf, ctx)
      M.calls = M.calls + 1
      if ctx.fail then error('asked to') end
      return 'left', 'on', 'the', 'stack'
    end
    return M)");
  gen_ = load({"p"});
  EXPECT_EQ(vm().idle_threads(), 0u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(call(Phase::access).status, CallStatus::ok);
  EXPECT_EQ(vm().idle_threads(), 1u);  // one thread served all three calls
  EXPECT_EQ(eval("return require('p').calls"), "3");
  // A call that fails leaves its thread dead: it is released, not kept.
  write_plugin("q", plugin_source("q", "access", "error('always')"));
  auto gen_q = load({"q"});
  Ref ctx = vm().new_ctx();
  EXPECT_EQ(run_call(gen_q, 0, Phase::access, Ref(), ctx).status, CallStatus::error);
  EXPECT_EQ(vm().idle_threads(), 0u);  // the idle thread ran it and died
  EXPECT_EQ(call(Phase::access).status, CallStatus::ok);
  EXPECT_EQ(vm().live_calls(), 0u);
}

TEST_F(CallTest, MissingPhaseIsOk) {
  load_one("p", "access", "");
  EXPECT_EQ(call(Phase::log).status, CallStatus::ok);
}

TEST_F(CallTest, ExitCarriesStatusAndBodyAndStopsThePhase) {
  load_one("p", "access", "turnpike.exit(403, 'denied')\nerror('not reached')");
  CallResult r = call(Phase::access);
  EXPECT_EQ(r.status, CallStatus::exit);
  EXPECT_EQ(r.exit_status, 403);
  EXPECT_EQ(r.exit_body, "denied");
  vm().collect_garbage();
  EXPECT_EQ(vm().live_calls(), 0u);
}

TEST_F(CallTest, ExitCarriesHeaders) {
  load_one("p", "access", "turnpike.exit(401, '{}', { ['www-authenticate'] = 'Basic', "
                          "['content-type'] = 'application/json', ['retry-after'] = 30 })");
  CallResult r = call(Phase::access);
  EXPECT_EQ(r.status, CallStatus::exit);
  using Headers = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(r.exit_headers, (Headers{{"content-type", "application/json"},
                                     {"retry-after", "30"},
                                     {"www-authenticate", "Basic"}}));
}

TEST_F(CallTest, ExitWithBadHeadersIsAnError) {
  load_one("p", "access", "turnpike.exit(401, '', { 'no-name' })");
  CallResult r = call(Phase::access);
  EXPECT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("headers must map names to strings"), std::string::npos) << r.error;
}

TEST_F(CallTest, ExitWithABadStatusIsAnError) {
  load_one("p", "access", "turnpike.exit(42)");
  CallResult r = call(Phase::access);
  EXPECT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("status must be an integer from 100 to 599"), std::string::npos) << r.error;
}

TEST_F(CallTest, BareCoroutineYieldIsAnError) {
  load_one("p", "access", "coroutine.yield('x')");
  CallResult r = call(Phase::access);
  EXPECT_EQ(r.status, CallStatus::error);
  EXPECT_NE(r.error.find("coroutine.yield called outside the PDK"), std::string::npos) << r.error;
}

TEST_F(CallTest, SleepSuspendsOnlyItsOwnCallAndCallsInterleave) {
  write_plugin("p", R"(
    local turnpike = require 'turnpike'
    local M = { name = 'p', priority = 1, schema = { type = 'object' }, trace = {} }
    function M.access(conf, ctx)
      table.insert(M.trace, conf.who .. '1')
      turnpike.sleep(conf.delay)
      table.insert(M.trace, conf.who .. '2')
    end
    return M)");
  gen_ = load({"p"});
  std::vector<std::string> errors;
  Ref slow = vm().check_conf_source(*gen_, 0, "{ who = 'a', delay = 0.05 }", errors);
  Ref fast = vm().check_conf_source(*gen_, 0, "{ who = 'b', delay = 0.01 }", errors);
  Ref ctx_a = vm().new_ctx();
  Ref ctx_b = vm().new_ctx();
  asio::io_context io;
  // The slow call starts first and sleeps longer: the fast one must run and finish while the
  // slow one waits, on the same thread and the same Vm.
  auto a = asio::co_spawn(io, vm().call(gen_, 0, Phase::access, slow, ctx_a, nullptr),
                          asio::use_future);
  auto b = asio::co_spawn(io, vm().call(gen_, 0, Phase::access, fast, ctx_b, nullptr),
                          asio::use_future);
  io.run();
  EXPECT_EQ(a.get().status, CallStatus::ok);
  EXPECT_EQ(b.get().status, CallStatus::ok);
  EXPECT_EQ(eval("return table.concat(require('p').trace, ',')"), "a1,b1,b2,a2");
  EXPECT_EQ(vm().live_calls(), 0u);
}

TEST_F(CallTest, PluginsOwnCoroutinesCanSleepAndExit) {
  write_plugin("p", R"(
    local turnpike = require 'turnpike'
    local M = { name = 'p', priority = 1, schema = {} }
    function M.access(conf, ctx)
      local gen = coroutine.wrap(function(a)
        turnpike.sleep(0.001)          -- passes through the plugin's coroutine to the runtime
        local b = coroutine.yield(a + 1)
        turnpike.sleep(0.001)
        return b * 2
      end)
      M.first = gen(1)
      M.second = gen(10)
      local co = coroutine.create(function() turnpike.exit(418, 'teapot') end)
      coroutine.resume(co)
      error('not reached: exit ends the call')
    end
    return M)");
  gen_ = load({"p"});
  CallResult r = call(Phase::access);
  EXPECT_EQ(r.status, CallStatus::exit) << r.error;
  EXPECT_EQ(r.exit_status, 418);
  EXPECT_EQ(eval("local p = require 'p' return p.first .. ',' .. p.second"), "2,20");
}

TEST_F(CallTest, CallAbandonedWhileSleepingReleasesItsCoroutine) {
  load_one("p", "access", "turnpike.sleep(3600)");
  size_t refs = vm().live_refs();
  {
    asio::io_context io;
    Ref ctx = vm().new_ctx();
    asio::co_spawn(io, vm().call(gen_, 0, Phase::access, Ref(), ctx, nullptr), asio::detached);
    io.poll();  // runs up to the sleep
    EXPECT_EQ(vm().live_calls(), 1u);
  }  // the io_context destroys the waiting call, as a request timeout would
  EXPECT_EQ(vm().live_calls(), 0u);
  EXPECT_EQ(vm().live_refs(), refs);
}

// Both bindings of the request functions: lua_CFunctions (what user plugins get) and FFI (what
// bundled plugins get).
TEST_F(CallTest, RequestFunctionsReachTheFakeRequest) {
  vm().set_request_api(&fake_request_api());
  for (std::string binding : {"require('turnpike').request",
                              "package.loaded['turnpike'].request"}) {
    SCOPED_TRACE(binding);
    write_plugin("p", R"(
      local req = )" + binding + R"(
      return { name = 'p', priority = 1, schema = {},
        access = function(conf, ctx)
          assert(req.get_header('X-Api-Key') == 'k1', 'header lookup is case-insensitive')
          assert(req.get_header('absent') == nil)
          assert(req.set_header('x-consumer', 'alice'))
          assert(req.set_header('x-api-key', nil))
          assert(req.set_header('host', 'x') == false, 'a refused set answers false')
          assert(req.get_method() == 'POST' and req.get_path() == '/v1/items')
          assert(req.get_client_ip() == '10.0.0.7')
        end })");
    gen_ = load({"p"});
    tp_request request;
    request.headers["x-api-key"] = "k1";
    request.method = "POST";
    request.path = "/v1/items";
    request.client_ip = "10.0.0.7";
    CallResult r = call(Phase::access, &request);
    EXPECT_EQ(r.status, CallStatus::ok) << r.error;
    EXPECT_EQ(request.headers.count("x-api-key"), 0u);
    EXPECT_EQ(request.headers["x-consumer"], "alice");
  }
}

TEST_F(CallTest, UserPluginsGetTheInterpretedPdkAndTheirOwnGlobals) {
  load_one("p", "access",
           "assert(turnpike.request == package.loaded['turnpike.interpreted'].request)\n"
           "assert(turnpike.request ~= package.loaded['turnpike'].request)\n"
           "stray_global = 1");
  EXPECT_EQ(call(Phase::access).status, CallStatus::ok);
  EXPECT_EQ(eval("return stray_global"), "nil");
  // Bundled (trusted) code gets the FFI bindings.
  EXPECT_EQ(eval("return require('turnpike').request == package.loaded['turnpike'].request"),
            "true");
}

// init_worker and timers run without a request: the pipeline's functions must not see NULL.
TEST_F(CallTest, WithoutARequestTheFunctionsAnswerNil) {
  vm().set_request_api(&fake_request_api());
  const std::string checks = "assert(req.get_header('a') == nil and req.get_path() == nil)\n"
                             "assert(req.set_header('a', 'b') == false)\n";
  load_one("p", "init_worker", "local req = turnpike.request\n" + checks);
  EXPECT_EQ(call(Phase::init_worker).status, CallStatus::ok);
  EXPECT_EQ(eval("local req = require('turnpike').request\n" + checks + "return 'ok'"), "ok");
}

TEST_F(CallTest, WithoutARequestApiTheFunctionsAnswerNil) {
  load_one("p", "access", "assert(turnpike.request.get_header('a') == nil)\n"
                          "assert(turnpike.request.get_path() == nil)");
  EXPECT_EQ(call(Phase::access).status, CallStatus::ok);
}

}  // namespace
}  // namespace turnpike::lua::test
