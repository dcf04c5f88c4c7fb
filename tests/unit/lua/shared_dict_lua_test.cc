// turnpike.shared.<name> from Lua (FFI): the methods, their answers, and two Vms (two workers)
// sharing one dictionary.
#include "lua_test_util.h"
#include "turnpike/lua/shared_dict.h"

namespace turnpike::lua::test {
namespace {

class SharedDictLuaTest : public LuaTest {
 protected:
  void SetUp() override {
    LuaTest::SetUp();
    dicts_.add("limits", 1 << 20);
    config_.shared_dicts = ffi_handle(dicts_);
  }
  SharedDicts dicts_;
};

// Both bindings: FFI (bundled plugins) and lua_CFunctions (user plugins).
class SharedDictBindingTest : public SharedDictLuaTest,
                              public ::testing::WithParamInterface<const char*> {};

INSTANTIATE_TEST_SUITE_P(Bindings, SharedDictBindingTest,
                         ::testing::Values("turnpike", "turnpike.interpreted"));

TEST_P(SharedDictBindingTest, MethodsAndTheirAnswers) {
  EXPECT_EQ(eval("local shared = require('" + std::string(GetParam()) + "').shared\n" + R"(
    local d = shared.limits
    assert(shared.nope == nil, 'an unknown dictionary is nil')
    assert(d:get('k') == nil)
    assert(d:set('k', 'v') == true and d:get('k') == 'v')
    assert(d:set('n', 1.5) and d:get('n') == 1.5)
    assert(d:set('b', false) and d:get('b') == false)
    local ok, err = d:add('k', 'other')
    assert(ok == false and err == 'exists', tostring(err))
    assert(d:add('fresh', 1) == true)
    assert(d:incr('c', 1, 0) == 1 and d:incr('c', 5) == 6)
    local v, why = d:incr('missing', 1)
    assert(v == nil and why == 'not found')
    v, why = d:incr('k', 1)
    assert(v == nil and why == 'not a number')
    ok, why = d:set('t', {})
    assert(ok == nil and why == 'cannot store a table')
    ok, why = d:set('big', ('x'):rep(2 * 1024 * 1024))
    assert(ok == false and why == 'value too large')
    d:delete('k')
    assert(d:get('k') == nil)
    return 'ok'
  )"), "ok");
  SharedValue out;
  dicts_.find("limits")->get("c", out);
  EXPECT_EQ(out.number, 6);  // the C++ side sees what Lua wrote
}

TEST_F(SharedDictLuaTest, TwoWorkersSeeTheSameDictionary) {
  VmConfig cfg = config_;
  cfg.bundled_dir = TURNPIKE_PLUGINS_DIR;
  std::string error;
  auto other = Vm::create(cfg, error);
  ASSERT_TRUE(other) << error;
  eval("require('turnpike').shared.limits:incr('hits', 1, 0)");
  other->run_chunk("require('turnpike').shared.limits:incr('hits', 1, 0)", error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(eval("return require('turnpike').shared.limits:get('hits')"), "2");
}

TEST_F(SharedDictLuaTest, UserPluginCountsThroughTheDictionary) {
  write_plugin("counter", plugin_source("counter", "access",
                                        "local n = turnpike.shared.limits:incr('requests', 1, 0)\n"
                                        "if n > 2 then turnpike.exit(429, 'limited') end"));
  auto gen = load({"counter"});
  Ref ctx = vm().new_ctx();
  EXPECT_EQ(run_call(gen, 0, Phase::access, Ref(), ctx).status, CallStatus::ok);
  EXPECT_EQ(run_call(gen, 0, Phase::access, Ref(), ctx).status, CallStatus::ok);
  CallResult third = run_call(gen, 0, Phase::access, Ref(), ctx);
  EXPECT_EQ(third.status, CallStatus::exit);
  EXPECT_EQ(third.exit_status, 429);
}

}  // namespace
}  // namespace turnpike::lua::test
