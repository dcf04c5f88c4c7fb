// turnpike.regex (plugins/lib/turnpike/regex.lua over src/lua/regex.cc): captures, named
// captures, flags, find and gsub positions, errors, and the bound on catastrophic patterns.
#include "lua_test_util.h"
#include "turnpike/lua/regex.h"

namespace turnpike::lua::test {
namespace {

class LibRegexTest : public LuaTest {
 protected:
  // Runs `body` after `local regex = require 'turnpike.regex'`; returns its result.
  std::string run(const std::string& body) {
    return eval("local regex = require 'turnpike.regex'\n" + body);
  }
};

TEST_F(LibRegexTest, MatchReturnsTheWholeMatchAndEachCapture) {
  EXPECT_EQ(run(R"(
    local re = assert(regex.compile([[(\w+)@(\w+)\.com]]))
    local m = re:match('mail bob@example.com now')
    return m[0] .. '|' .. m[1] .. '|' .. m[2] .. '|' .. #m)"),
            "bob@example.com|bob|example|2");
}

TEST_F(LibRegexTest, NoMatchIsNil) {
  EXPECT_EQ(run("local re = assert(regex.compile('^/api/'))\n"
                "return tostring(re:match('/web/x')) .. ' ' .. tostring(re:find('/web/x'))"),
            "nil nil");
}

TEST_F(LibRegexTest, GroupThatDidNotTakePartIsFalse) {
  EXPECT_EQ(run(R"(
    local m = assert(regex.compile('(a)|(b)')):match('b')
    return tostring(m[1]) .. ' ' .. m[2])"),
            "false b");
}

TEST_F(LibRegexTest, NamedCapturesAreKeyedByNameAndNumber) {
  EXPECT_EQ(run(R"(
    local re = assert(regex.compile([[^/users/(?<id>\d+)/posts/(?<post>\d+)$]]))
    local m = re:match('/users/42/posts/7')
    return m.id .. ' ' .. m.post .. ' ' .. m[1] .. ' ' .. m[2])"),
            "42 7 42 7");
}

TEST_F(LibRegexTest, FlagsChangeTheMatch) {
  EXPECT_EQ(run(R"(
    local out = {}
    out[#out + 1] = tostring(assert(regex.compile('bearer')):find('Bearer x'))
    out[#out + 1] = tostring(assert(regex.compile('bearer', 'i')):find('Bearer x'))
    out[#out + 1] = tostring(assert(regex.compile('^b', 'm')):find('a\nb'))
    out[#out + 1] = tostring(assert(regex.compile('a.b', 's')):find('a\nb'))
    out[#out + 1] = tostring(assert(regex.compile('a b # comment', 'x')):find('xab'))
    return table.concat(out, ' '))"),
            "nil 1 3 1 2");
}

TEST_F(LibRegexTest, FindGivesOneBasedInclusivePositionsFromInit) {
  EXPECT_EQ(run(R"(
    local re = assert(regex.compile('o+'))
    local a, b = re:find('foo boo')
    local c, d = re:find('foo boo', 4)
    local e, f = re:find('foo boo', -2)
    local g = re:find('foo boo', 9)
    return table.concat({ a, b, c, d, e, f, tostring(g) }, ','))"),
            "2,3,6,7,6,7,nil");
}

TEST_F(LibRegexTest, FindAgreesWithStringFindOnEmptyMatches) {
  EXPECT_EQ(run(R"(
    local a, b = assert(regex.compile('x*')):find('abc')
    local c, d = string.find('abc', 'x*')
    return a .. ',' .. b .. ' ' .. c .. ',' .. d)"),
            "1,0 1,0");
}

TEST_F(LibRegexTest, GsubReplacesEveryMatchWithGroupReferences) {
  EXPECT_EQ(run(R"(
    local re = assert(regex.compile([[(?<k>\w+)=(\w+)]]))
    local out, n = re:gsub('a=1&b=2', '${k}:$2$$')
    local same, zero = re:gsub('&&', 'x')
    return out .. ' ' .. n .. ' ' .. same .. ' ' .. zero)"),
            "a:1$&b:2$ 2 && 0");
}

TEST_F(LibRegexTest, GsubGrowsItsBufferForLongResults) {
  EXPECT_EQ(run(R"(
    local out, n = assert(regex.compile('a')):gsub(('a'):rep(1000), 'bcd')
    return #out .. ' ' .. n .. ' ' .. out:sub(1, 6))"),
            "3000 1000 bcdbcd");
}

TEST_F(LibRegexTest, GsubWithAnUnknownGroupIsAnError) {
  EXPECT_EQ(run(R"(
    local out, err = assert(regex.compile('a')):gsub('abc', '$7')
    return tostring(out) .. ' ' .. tostring(err ~= nil))"),
            "nil true");
}

TEST_F(LibRegexTest, BadPatternGivesPcreMessageWithOffset) {
  EXPECT_EQ(run(R"(
    local re, err = regex.compile('a(b')
    return tostring(re) .. ' ' .. err)"),
            "nil missing closing parenthesis at offset 3");
}

TEST_F(LibRegexTest, UnknownFlagIsAnError) {
  EXPECT_EQ(run("local re, err = regex.compile('a', 'q') return tostring(re) .. ' ' .. err"),
            "nil unknown flag 'q' (expected i, m, s, x, u, U, D or J)");
}

TEST_F(LibRegexTest, CatastrophicBacktrackingStopsAtTheMatchLimit) {
  // (a+)+$ against a run of a's ending in b tries every split of the run: 2^40 attempts.
  EXPECT_EQ(run(R"(
    local re = assert(regex.compile('^(a+)+$'))
    local subject = ('a'):rep(40) .. 'b'
    local m, err = re:match(subject)
    local f, ferr = re:find(subject)
    local g, gerr = re:gsub(subject, 'x')
    assert(re:match(('a'):rep(40))[0] == ('a'):rep(40), 'the same regex still matches')
    return tostring(m) .. ' ' .. err .. ' ' .. ferr .. ' ' .. gerr)"),
            "nil match limit match limit match limit");
}

TEST_F(LibRegexTest, Utf8FlagMatchesCharactersNotBytes) {
  EXPECT_EQ(run(R"(
    local bytes = assert(regex.compile('^.$')):find('\xC3\xA9')
    local chars = assert(regex.compile('^.$', 'u')):find('\xC3\xA9')
    local invalid = assert(regex.compile('x', 'u')):find('\xFFx')
    return tostring(bytes) .. ' ' .. tostring(chars) .. ' ' .. tostring(invalid))"),
            "nil 1 2");
}

TEST_F(LibRegexTest, CompiledRegexesAreFreedByTheGarbageCollector) {
  vm().collect_garbage();
  int64_t before = tp_regex_live();
  run("for i = 1, 500 do local re = regex.compile('(x)' .. i) assert(re:match('x' .. i)) end");
  EXPECT_GT(tp_regex_live(), before);
  vm().collect_garbage();
  EXPECT_EQ(tp_regex_live(), before);
}

TEST_F(LibRegexTest, OneShotFormsCompileOnceAndCache) {
  int64_t before = tp_regex_live();
  EXPECT_EQ(run(R"(
    local a, b = regex.find('id=42', [[\d+]])
    local m = regex.match('ID=7', [[id=(\d)]], 'i')
    local out, n = regex.gsub('a-b-c', '-', '+')
    for i = 1, 100 do regex.find('x', [[\d+]]) end
    local bad, err = regex.match('x', '(')
    return table.concat({ a, b, m[1], out, n, tostring(bad), err }, ' '))"),
            "4 5 7 a+b+c 2 nil missing closing parenthesis at offset 1");
  EXPECT_EQ(tp_regex_live(), before + 3);  // one compile per pattern and flags, kept
}

TEST_F(LibRegexTest, OneShotCacheIsBounded) {
  vm().collect_garbage();
  int64_t before = tp_regex_live();
  run("regex.cache_size = 10 for i = 1, 95 do assert(regex.find('x' .. i, 'x' .. i)) end");
  vm().collect_garbage();
  EXPECT_LE(tp_regex_live(), before + 10);
}

TEST_F(LibRegexTest, UserPluginsCanRequireIt) {
  write_plugin("router", plugin_source("router", "access", R"(
    local m = require('turnpike.regex').compile('^/v(\\d)/'):match('/v2/users')
    if m[1] ~= '2' then error('wrong capture ' .. tostring(m[1])) end
    turnpike.exit(200, m[1]))"));
  auto gen = load({"router"});
  Ref ctx = vm().new_ctx();
  CallResult r = run_call(gen, 0, Phase::access, Ref(), ctx);
  EXPECT_EQ(r.status, CallStatus::exit) << r.error;
  EXPECT_EQ(r.exit_body, "2");
}

}  // namespace
}  // namespace turnpike::lua::test
