// plugins/lib/turnpike/schema.lua through the Vm: each keyword of the subset, defaults, every
// error reported at once with its path, schema definitions checked, and Vm::check_conf with a
// plugin's check_schema.
#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

class SchemaTest : public LuaTest {
 protected:
  // "ok" or the errors, one per line, of validating Lua `conf` against Lua `def`.
  std::string validate(const std::string& def, const std::string& conf) {
    return eval("local schema = require 'turnpike.schema'\n"
                "local ok, errs = schema.validate(" + def + ", " + conf + ")\n"
                "return ok and 'ok' or table.concat(errs, '\\n')");
  }
  // The errors of a schema definition, joined by "; ", or "ok".
  std::string check_definition(const std::string& def) {
    return eval("local errs = require('turnpike.schema').check_definition(" + def + ")\n"
                "return #errs == 0 and 'ok' or table.concat(errs, '; ')");
  }
};

TEST_F(SchemaTest, Types) {
  EXPECT_EQ(validate("{type='string'}", "'x'"), "ok");
  EXPECT_EQ(validate("{type='string'}", "1"), "conf: expected string, got integer");
  EXPECT_EQ(validate("{type='integer'}", "3"), "ok");
  EXPECT_EQ(validate("{type='integer'}", "3.5"), "conf: expected integer, got number");
  EXPECT_EQ(validate("{type='number'}", "3.5"), "ok");
  EXPECT_EQ(validate("{type='number'}", "'3'"), "conf: expected number, got string");
  EXPECT_EQ(validate("{type='boolean'}", "false"), "ok");
  EXPECT_EQ(validate("{type='boolean'}", "'true'"), "conf: expected boolean, got string");
  EXPECT_EQ(validate("{type='object'}", "{a=1}"), "ok");
  EXPECT_EQ(validate("{type='object'}", "{1,2}"), "conf: expected object, got array");
  EXPECT_EQ(validate("{type='array'}", "{1,2}"), "ok");
  EXPECT_EQ(validate("{type='array'}", "{a=1}"), "conf: expected array, got object");
  EXPECT_EQ(validate("{type='array'}", "{[1]=1,[3]=3}"), "conf: expected array, got object");
  // An empty table is both an empty array and an empty object (YAML [] and {} look the same).
  EXPECT_EQ(validate("{type='array'}", "{}"), "ok");
  EXPECT_EQ(validate("{type='object'}", "{}"), "ok");
}

TEST_F(SchemaTest, Required) {
  const std::string def = "{type='object', required={'key','header'}, properties={"
                          "key={type='string'}, header={type='string'}}}";
  EXPECT_EQ(validate(def, "{key='a', header='b'}"), "ok");
  EXPECT_EQ(validate(def, "{}"), "conf.key: required\nconf.header: required");
}

TEST_F(SchemaTest, Enum) {
  EXPECT_EQ(validate("{enum={'a','b'}}", "'a'"), "ok");
  EXPECT_EQ(validate("{enum={'a','b'}}", "'c'"), "conf: expected one of \"a\", \"b\", got \"c\"");
  EXPECT_EQ(validate("{type='integer', enum={1,2}}", "3"), "conf: expected one of 1, 2, got 3");
}

TEST_F(SchemaTest, NumberBounds) {
  const std::string def = "{type='integer', minimum=1, maximum=10}";
  EXPECT_EQ(validate(def, "1"), "ok");
  EXPECT_EQ(validate(def, "10"), "ok");
  EXPECT_EQ(validate(def, "0"), "conf: expected at least 1, got 0");
  EXPECT_EQ(validate(def, "11"), "conf: expected at most 10, got 11");
}

TEST_F(SchemaTest, StringLength) {
  const std::string def = "{type='string', minLength=2, maxLength=3}";
  EXPECT_EQ(validate(def, "'ab'"), "ok");
  EXPECT_EQ(validate(def, "'a'"), "conf: expected at least 2 characters, got 1");
  EXPECT_EQ(validate(def, "'abcd'"), "conf: expected at most 3 characters, got 4");
}

TEST_F(SchemaTest, PatternIsARegularExpression) {
  const std::string def = "{type='string', pattern=[[^\\d+$]]}";
  EXPECT_EQ(validate(def, "'123'"), "ok");
  EXPECT_EQ(validate(def, "'12a'"), "conf: does not match the pattern \"^\\\\d+$\"");
  // Unanchored, a pattern only has to occur somewhere.
  EXPECT_EQ(validate("{type='string', pattern='[0-9]'}", "'a1b'"), "ok");
}

TEST_F(SchemaTest, ItemsAndArrayBounds) {
  const std::string def = "{type='array', minItems=1, maxItems=3, items={type='string'}}";
  EXPECT_EQ(validate(def, "{'a','b'}"), "ok");
  EXPECT_EQ(validate(def, "{}"), "conf: expected at least 1 items, got 0");
  EXPECT_EQ(validate(def, "{'a','b','c','d'}"), "conf: expected at most 3 items, got 4");
  EXPECT_EQ(validate(def, "{'a', 2, true}"),
            "conf[2]: expected string, got integer\nconf[3]: expected string, got boolean");
}

TEST_F(SchemaTest, AdditionalPropertiesFalseNamesTheUnknownKey) {
  const std::string def = "{type='object', additionalProperties=false, properties={"
                          "key={type='string'}}}";
  EXPECT_EQ(validate(def, "{key='a'}"), "ok");
  EXPECT_EQ(validate(def, "{key='a', kye='b'}"), "conf.kye: unknown property");
  // Without it, unknown keys pass (a plugin may accept free-form maps).
  EXPECT_EQ(validate("{type='object', properties={key={type='string'}}}", "{other=1}"), "ok");
}

TEST_F(SchemaTest, NestedPathsAndEveryErrorAtOnce) {
  const std::string def = R"({type='object', required={'nodes'}, properties={
      nodes={type='array', items={type='object', required={'host'}, properties={
          host={type='string'}, port={type='integer', minimum=1, maximum=65535}}}},
      mode={enum={'fast','safe'}}}})";
  EXPECT_EQ(validate(def, "{mode='slow', nodes={{host='a', port=0}, {port='x'}}}"),
            "conf.mode: expected one of \"fast\", \"safe\", got \"slow\"\n"
            "conf.nodes[1].port: expected at least 1, got 0\n"
            "conf.nodes[2].host: required\n"
            "conf.nodes[2].port: expected integer, got string");
}

TEST_F(SchemaTest, DefaultsAreFilledInAndNotShared) {
  std::string out = eval(R"(
    local schema = require 'turnpike.schema'
    local def = {type='object', properties={
      header={type='string', default='apikey'},
      hide={type='boolean', default=true},
      list={type='array', default={'a'}},
      key={type='string'}}}
    local a, b = {}, { header = 'x-key' }
    assert(schema.validate(def, a)); assert(schema.validate(def, b))
    a.list[2] = 'changed'
    return table.concat({a.header, tostring(a.hide), b.header, #b.list, tostring(a.key)}, ',')
  )");
  EXPECT_EQ(out, "apikey,true,x-key,1,nil");
}

TEST_F(SchemaTest, RequiredIsSatisfiedByADefault) {
  EXPECT_EQ(validate("{type='object', required={'h'}, properties={h={type='string', default='x'}}}",
                     "{}"),
            "ok");
}

TEST_F(SchemaTest, DefinitionsAreChecked) {
  EXPECT_EQ(check_definition("{type='object', properties={a={type='string', pattern='^x'}}}"), "ok");
  EXPECT_EQ(check_definition("{type='strng'}"), "schema.type: unknown type \"strng\"");
  EXPECT_EQ(check_definition("{maxlength=3}"), "schema: unknown keyword 'maxlength'");
  EXPECT_EQ(check_definition("{enum={}}"), "schema.enum: expected a non-empty list");
  EXPECT_EQ(check_definition("{pattern='[a'}").rfind("schema.pattern: not a valid regular expression", 0),
            0u);
  EXPECT_EQ(check_definition("{required='key'}"), "schema.required: expected a list of property names");
  EXPECT_EQ(check_definition("{additionalProperties='no'}"),
            "schema.additionalProperties: expected a boolean");
  EXPECT_EQ(check_definition("{items={type=1}}"), "schema.items.type: unknown type 1");
  EXPECT_EQ(check_definition("{type='integer', minimum=1, default=0}"),
            "schema.default: invalid (default: expected at least 1, got 0)");
  EXPECT_EQ(check_definition("3"), "schema: expected a table, got number");
}

// Vm::check_conf: the schema, then the plugin's check_schema, errors as a list.
class CheckConfTest : public LuaTest {
 protected:
  void SetUp() override {
    LuaTest::SetUp();
    write_plugin("auth", R"(
      local M = {
        name = 'auth', priority = 2500,
        schema = { type = 'object', required = { 'key' }, properties = {
          key = { type = 'string', minLength = 4 },
          header = { type = 'string', default = 'apikey' } } },
        check_schema = function(conf)
          if conf.key == 'forbidden' then return false, 'conf.key: this key is reserved' end
          if conf.key == 'raise' then error('boom') end
          return true
        end,
      }
      function M.access(conf, ctx) M.seen_header = conf.header end
      return M)");
    gen_ = load({"auth"});
  }
  void TearDown() override {
    gen_.reset();  // before the Vm
    LuaTest::TearDown();
  }
  std::vector<std::string> errors_for(const std::string& conf) {
    std::vector<std::string> errors;
    Ref ref = vm().check_conf_source(*gen_, 0, conf, errors);
    EXPECT_EQ(ref.valid(), errors.empty());
    return errors;
  }
  std::shared_ptr<const Generation> gen_;
};

TEST_F(CheckConfTest, ValidConfGetsItsDefaults) {
  std::vector<std::string> errors;
  Ref conf = vm().check_conf_source(*gen_, 0, "{ key = 'secret' }", errors);
  ASSERT_TRUE(conf.valid());
  Ref ctx = vm().new_ctx();
  ASSERT_EQ(run_call(gen_, 0, Phase::access, conf, ctx).status, CallStatus::ok);
  // The access function saw the default header.
  EXPECT_EQ(eval("return require('auth').seen_header"), "apikey");
}

TEST_F(CheckConfTest, SchemaErrorsComeAllAtOnce) {
  EXPECT_EQ(errors_for("{ key = 'abc', header = 3 }"),
            (std::vector<std::string>{"conf.header: expected string, got integer",
                                      "conf.key: expected at least 4 characters, got 3"}));
}

TEST_F(CheckConfTest, CheckSchemaRejectionAndErrorAreReported) {
  EXPECT_EQ(errors_for("{ key = 'forbidden' }"),
            (std::vector<std::string>{"conf.key: this key is reserved"}));
  auto errors = errors_for("{ key = 'raise' }");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("check_schema raised: "), std::string::npos);
  EXPECT_NE(errors[0].find("boom"), std::string::npos);
}

// The config loader's way in: a parsed YAML map as a ConfValue.
TEST_F(CheckConfTest, ConfValueFromTheConfigLoader) {
  std::vector<std::string> errors;
  ConfValue good = ConfMap{{"key", "secret"}, {"unused", ConfList{1, true, ConfValue()}}};
  EXPECT_TRUE(vm().check_conf(*gen_, 0, good, errors).valid());
  EXPECT_TRUE(errors.empty());
  ConfValue bad = ConfMap{{"key", 12}, {"header", ConfList{"a"}}};
  EXPECT_FALSE(vm().check_conf(*gen_, 0, bad, errors).valid());
  EXPECT_EQ(errors, (std::vector<std::string>{"conf.header: expected string, got array",
                                              "conf.key: expected string, got integer"}));
  errors.clear();
  EXPECT_FALSE(vm().check_conf(*gen_, 0, ConfValue("not a map"), errors).valid());
  EXPECT_EQ(errors, (std::vector<std::string>{"conf: expected object, got string"}));
}

TEST_F(CheckConfTest, ConfThatIsNotLuaDataIsReported) {
  EXPECT_EQ(errors_for("{ key = }").size(), 1u);
  // A conf sees no globals: it is data, not code.
  auto errors = errors_for("{ key = os.time() }");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("attempt to index global 'os'"), std::string::npos) << errors[0];
}

}  // namespace
}  // namespace turnpike::lua::test
