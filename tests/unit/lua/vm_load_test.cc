// Vm creation, the sandbox, the memory cap, and loading plugin modules into generations: every
// way a module can be wrong comes back as one clear message and leaves the Vm usable.
#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

using VmLoadTest = LuaTest;

const char* kGood = R"(
return {
  name = "good", version = "1.0", priority = 1000,
  schema = { type = "object", properties = { key = { type = "string" } } },
  access = function(conf, ctx) end,
  log = function(conf, ctx) end,
}
)";

TEST_F(VmLoadTest, LoadsAPluginAndDescribesIt) {
  write_plugin("good", kGood);
  auto gen = load({"good"});
  ASSERT_TRUE(gen);
  ASSERT_EQ(gen->plugins().size(), 1u);
  const PluginInfo& p = gen->plugins()[0];
  EXPECT_EQ(p.name, "good");
  EXPECT_EQ(p.version, "1.0");
  EXPECT_EQ(p.priority, 1000);
  EXPECT_FALSE(p.trusted);  // from a user directory
  EXPECT_TRUE(p.has_phase(Phase::access));
  EXPECT_TRUE(p.has_phase(Phase::log));
  EXPECT_FALSE(p.has_phase(Phase::rewrite));
  EXPECT_EQ(gen->find("good"), 0);
  EXPECT_EQ(gen->find("other"), -1);
}

TEST_F(VmLoadTest, SandboxHidesBlockingAndProcessEndingLibraries) {
  EXPECT_EQ(eval("return io"), "nil");
  EXPECT_EQ(eval("return os.exit"), "nil");
  EXPECT_EQ(eval("return os.execute"), "nil");
  EXPECT_EQ(eval("return dofile"), "nil");
  EXPECT_EQ(eval("return type(os.time())"), "number");
  EXPECT_EQ(eval("return package.cpath"), "");
  EXPECT_EQ(eval("return (pcall(require, 'socket.core'))"), "false");
}

TEST_F(VmLoadTest, MissingPluginIsNamed) {
  auto errors = load_errors({"nope"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "plugin \"nope\": no nope.lua in the plugin directories");
}

TEST_F(VmLoadTest, SyntaxErrorGivesFileAndLine) {
  write_plugin("broken", "return {\n  name = 'broken',\n  priority = \n}\n");
  auto errors = load_errors({"broken"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("plugin \"broken\": "), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("broken.lua:4:"), std::string::npos) << errors[0];
}

TEST_F(VmLoadTest, RuntimeErrorInModuleBodyGivesFileAndLine) {
  write_plugin("raises", "local x = nil\nreturn x.field\n");
  auto errors = load_errors({"raises"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("raises.lua:2: attempt to index"), std::string::npos) << errors[0];
}

TEST_F(VmLoadTest, MissingFieldsAreAllReportedInOneMessage) {
  write_plugin("bare", "return { version = '1' }");
  auto errors = load_errors({"bare"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0],
            "plugin \"bare\": field 'name' missing (expected a string); field 'priority' missing "
            "(expected an integer); field 'schema' missing (expected a table)");
}

TEST_F(VmLoadTest, NameMustMatchTheFile) {
  write_plugin("named", "return { name = 'other', priority = 1, schema = {} }");
  auto errors = load_errors({"named"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0],
            "plugin \"named\": field 'name' is \"other\", expected \"named\" (the file name)");
}

TEST_F(VmLoadTest, BadSchemaIsReported) {
  write_plugin("badschema", R"(return { name = 'badschema', priority = 1, schema = {
    type = 'object', requried = { 'key' },
    properties = { key = { type = 'strng' }, n = { type = 'integer', minimum = 'one' } } } })");
  auto errors = load_errors({"badschema"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0],
            "plugin \"badschema\": schema: unknown keyword 'requried'; "
            "schema.properties.key.type: unknown type \"strng\"; "
            "schema.properties.n.minimum: expected a number");
}

TEST_F(VmLoadTest, PhaseFieldThatIsNotAFunctionIsReported) {
  write_plugin("notfn", "return { name = 'notfn', priority = 1, schema = {}, access = 3 }");
  auto errors = load_errors({"notfn"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "plugin \"notfn\": field 'access': expected a function");
}

TEST_F(VmLoadTest, EveryFailingPluginGetsItsOwnMessage) {
  write_plugin("good", kGood);
  write_plugin("bare", "return {}");
  auto errors = load_errors({"bare", "good", "nope"});
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].rfind("plugin \"bare\": ", 0), 0u);
  EXPECT_EQ(errors[1].rfind("plugin \"nope\": ", 0), 0u);
}

// The loop would be JIT-compiled (and never see the count hook) if user code were not interpreted.
TEST_F(VmLoadTest, ModuleBodyThatLoopsForeverIsCutOff) {
  config_.instruction_budget = 1'000'000;
  write_plugin("spin", "while true do end");
  auto errors = load_errors({"spin"});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("instruction budget exceeded"), std::string::npos) << errors[0];
  write_plugin("good", kGood);
  EXPECT_TRUE(load({"good"}));
}

TEST_F(VmLoadTest, ReloadMakesANewGenerationAndTheOldOneKeepsItsCode) {
  write_plugin("versioned", "local lib = require 'helper'\n"
                            "return { name = 'versioned', priority = 1, schema = {},\n"
                            "  version = lib.v }");
  std::ofstream(dir_ / "helper.lua") << "return { v = 'one' }";
  auto first = load({"versioned"});
  std::ofstream(dir_ / "helper.lua") << "return { v = 'two' }";
  auto second = load({"versioned"});
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->plugins()[0].version, "one");
  EXPECT_EQ(second->plugins()[0].version, "two");  // the library module was reloaded too
}

TEST_F(VmLoadTest, FailedReloadLeavesTheRunningGenerationIntact) {
  write_plugin("good", kGood);
  auto running = load({"good"});
  write_plugin("good", "return {");
  EXPECT_EQ(load_errors({"good"}).size(), 1u);
  ASSERT_TRUE(running);
  EXPECT_EQ(running->plugins()[0].name, "good");
}

TEST_F(VmLoadTest, ALoadGivenTheCheckedTextIgnoresFilesEditedSince) {
  // The config check's load reads the modules; each worker loads that text, never the files
  // again: a plugin edited after the check (a refused reload's) must not reach a worker.
  write_plugin("versioned", "local lib = require 'helper'\n"
                            "return { name = 'versioned', priority = 1, schema = {},\n"
                            "  version = lib.v }");
  std::ofstream(dir_ / "helper.lua") << "return { v = 'checked' }";
  PluginSources read;
  std::vector<std::string> errors;
  auto checked = vm().load({"versioned"}, errors, nullptr, &read);
  ASSERT_TRUE(checked);
  ASSERT_EQ(read.size(), 2u);  // the plugin and the module it requires
  write_plugin("versioned", "return {");
  std::ofstream(dir_ / "helper.lua") << "return { v = 'edited' }";
  auto worker = vm().load({"versioned"}, errors, &read);
  ASSERT_TRUE(worker) << (errors.empty() ? std::string() : errors.front());
  EXPECT_EQ(worker->plugins()[0].version, "checked");
  EXPECT_FALSE(worker->plugins()[0].trusted);
  errors.clear();
  EXPECT_FALSE(vm().load({"versioned"}, errors));  // read from disk: the edit shows
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("versioned.lua:1:"), std::string::npos) << errors[0];
}

TEST_F(VmLoadTest, MemoryCapFailsTheChunkAndTheVmStaysUsable) {
  config_.memory_limit = 8u << 20;
  std::string error;
  vm().run_chunk("local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end", error);
  EXPECT_EQ(error, "memory limit of 8388608 bytes reached");
  vm().collect_garbage();
  EXPECT_LT(vm().memory_used(), 2u << 20);
  EXPECT_EQ(eval("return 1 + 1"), "2");
}

TEST_F(VmLoadTest, GenerationsAndRefsAreReleased) {
  write_plugin("good", kGood);
  size_t before = vm().live_refs();
  {
    auto gen = load({"good"});
    Ref ctx = vm().new_ctx();
    EXPECT_EQ(vm().live_refs(), before + 2);
  }
  EXPECT_EQ(vm().live_refs(), before);
}

}  // namespace
}  // namespace turnpike::lua::test
