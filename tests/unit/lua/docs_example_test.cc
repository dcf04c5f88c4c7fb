// The example plugin of docs/plugins.md, verbatim, does what the page says.
#include "fake_request.h"
#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

const char* kDocsExample = R"(
-- my-auth.lua: lets a request through when its X-Api-Key header is one of conf.keys.
local turnpike = require "turnpike"

local M = {
  name = "my-auth",          -- must equal the file name
  version = "1.0",
  priority = 2500,           -- higher runs earlier within a phase
  schema = {
    type = "object",
    required = { "keys" },
    additionalProperties = false,
    properties = {
      keys = { type = "array", minItems = 1, items = { type = "string", minLength = 8 } },
      header = { type = "string", default = "x-api-key" },
    },
  },
}

function M.check_schema(conf)            -- optional: checks the schema cannot express
  if #conf.keys > 1000 then return false, "conf.keys: at most 1000 keys" end
  return true
end

function M.access(conf, ctx)
  local key = turnpike.request.get_header(conf.header)
  for _, allowed in ipairs(conf.keys) do
    if key == allowed then ctx.consumer = key return end
  end
  turnpike.exit(401, '{"error":"invalid api key"}')
end

return M
)";

TEST_F(LuaTest, DocsExamplePluginAllowsAndDenies) {
  write_plugin("my-auth", kDocsExample);
  vm().set_request_api(&fake_request_api());
  auto gen = load({"my-auth"});
  ASSERT_TRUE(gen);
  std::vector<std::string> errors;
  Ref conf = vm().check_conf_source(*gen, 0, "{ keys = { 'secret-key-1' } }", errors);
  ASSERT_TRUE(conf.valid());

  tp_request allowed;
  allowed.headers["X-Api-Key"] = "secret-key-1";
  Ref ctx = vm().new_ctx();
  EXPECT_EQ(run_call(gen, 0, Phase::access, conf, ctx, &allowed).status, CallStatus::ok);

  tp_request denied;
  CallResult r = run_call(gen, 0, Phase::access, conf, ctx, &denied);
  EXPECT_EQ(r.status, CallStatus::exit);
  EXPECT_EQ(r.exit_status, 401);
  EXPECT_EQ(r.exit_body, "{\"error\":\"invalid api key\"}");

  errors.clear();
  EXPECT_FALSE(vm().check_conf_source(*gen, 0, "{ keys = { 'short' }, hedaer = 'x' }", errors).valid());
  EXPECT_EQ(errors, (std::vector<std::string>{"conf.hedaer: unknown property",
                                              "conf.keys[1]: expected at least 8 characters, got 5"}));
  gen.reset();
}

TEST_F(LuaTest, InitWorkerIsCalledWithoutConfOrCtx) {
  write_plugin("init", plugin_source("init", "init_worker",
                                     "assert(conf == nil and ctx == nil)"));
  auto gen = load({"init"});
  EXPECT_EQ(run_call(gen, 0, Phase::init_worker, Ref(), Ref()).status, CallStatus::ok);
  gen.reset();
}

}  // namespace
}  // namespace turnpike::lua::test
