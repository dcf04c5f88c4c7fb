// turnpike.json (plugins/lib/turnpike/json.lua): the value mapping both ways, round trips,
// string escapes and \u surrogate pairs, and every kind of malformed or hostile text decode must
// refuse with a message that says where.
#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

class LibJsonTest : public LuaTest {
 protected:
  std::string run(const std::string& body) {
    return eval("local json = require 'turnpike.json'\n" + body);
  }
  // json.encode(json.decode(text)), which must succeed.
  std::string reencode(const std::string& text) {
    return run("local v, err = json.decode([==[" + text + "]==])\n"
               "assert(err == nil, err) return json.encode(v)");
  }
  // The message of a decode that must fail.
  std::string decode_error(const std::string& text) {
    return run("local v, err = json.decode([==[" + text + "]==])\n"
               "assert(v == nil, 'decoded') return err");
  }
};

TEST_F(LibJsonTest, EncodesScalars) {
  EXPECT_EQ(run("return json.encode('a')"), R"("a")");
  EXPECT_EQ(run("return json.encode(42) .. json.encode(-7) .. json.encode(0)"), "42-70");
  EXPECT_EQ(run("return json.encode(1.5) .. ' ' .. json.encode(0.1) .. ' ' .. json.encode(1e300)"),
            "1.5 0.1 1e+300");
  EXPECT_EQ(run("return json.encode(2^53) .. ' ' .. json.encode(1/3)"),
            "9007199254740992 0.3333333333333333");
  EXPECT_EQ(run("return json.encode(true) .. json.encode(false) .. json.encode(json.null)"),
            "truefalsenull");
}

TEST_F(LibJsonTest, EncodesArraysAndObjectsWithSortedKeys) {
  EXPECT_EQ(run("return json.encode({ 1, 'two', { 3 } })"), R"([1,"two",[3]])");
  EXPECT_EQ(run("return json.encode({ sub = 'alice', n = 3, roles = { 'admin' } })"),
            R"({"n":3,"roles":["admin"],"sub":"alice"})");
  // Keys that are not exactly 1..n make an object; number keys become strings.
  EXPECT_EQ(run("return json.encode({ [1] = 'a', [3] = 'c' })"), R"({"1":"a","3":"c"})");
  EXPECT_EQ(run("return json.encode({ 'a', x = 1 })"), R"({"1":"a","x":1})");
}

TEST_F(LibJsonTest, EmptyTableIsAnObjectUnlessMarkedAsArray) {
  EXPECT_EQ(run("return json.encode({})"), "{}");
  EXPECT_EQ(run("return json.encode(json.empty_array)"), "[]");
  EXPECT_EQ(run("return json.encode(setmetatable({}, json.array_mt))"), "[]");
  EXPECT_EQ(reencode(R"({"a":[],"b":{}})"), R"({"a":[],"b":{}})");
}

TEST_F(LibJsonTest, EscapesStringsPerRfc8259) {
  EXPECT_EQ(run(R"(return json.encode('q"b\\n\n\t\1\31/é'))"),
            R"("q\"b\\n\n\t\u0001\u001f/é")");
}

TEST_F(LibJsonTest, RefusesWhatJsonCannotSay) {
  for (const char* bad : {"0/0", "1/0", "-1/0", "function() end", "{ [true] = 1 }",
                          "(function() local t = {} t.self = t return t end)()"}) {
    std::string error;
    vm().run_chunk(std::string("return require('turnpike.json').encode(") + bad + ")", error);
    EXPECT_NE(error.find("json.encode: "), std::string::npos) << bad << ": " << error;
  }
}

TEST_F(LibJsonTest, DecodesValues) {
  EXPECT_EQ(run(R"(
    local v = assert(json.decode(' {"a": [1, -2.5e2, true, false, null], "b": {"c": "d"}} '))
    return table.concat({ v.a[1], v.a[2], tostring(v.a[3]), tostring(v.a[4]),
                          tostring(v.a[5] == json.null), #v.a, v.b.c }, ' '))"),
            "1 -250 true false true 5 d");
  EXPECT_EQ(run("return json.decode('\"x\"') .. json.decode('0') .. json.decode('-0.0e0')"), "x0-0");
}

TEST_F(LibJsonTest, DecodesEscapesAndSurrogatePairsToUtf8) {
  EXPECT_EQ(run(R"(return json.decode([["a\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00"]]))"),
            "a\"\\/\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}

TEST_F(LibJsonTest, EscapedStringsAndKeysKeepTheirOwnBytes) {
  // Unescaped strings share one buffer on the C++ side: each must get its own slice.
  EXPECT_EQ(run(R"(
    local v = assert(json.decode([[{"k\n1": ["a\nb", "plain", "c\td", "\u00e9x"], "k\t2": "\"q\""}]]))
    local a = v['k\n1']
    return a[1] .. '|' .. a[2] .. '|' .. a[3] .. '|' .. a[4] .. '|' .. v['k\t2'])"),
            "a\nb|plain|c\td|\xC3\xA9x|\"q\"");
}

TEST_F(LibJsonTest, LongNumbersAndLargeArrays) {
  EXPECT_EQ(run("return json.decode('[1' .. ('0'):rep(99) .. ']')[1] == 1e99"), "true");
  EXPECT_EQ(run("return json.decode('[0.' .. ('0'):rep(400) .. '1]')[1]"), "0");
  EXPECT_EQ(run(R"(
    local t = {}
    for i = 1, 10000 do t[i] = i end
    local v = assert(json.decode(json.encode(t)))
    return #v .. ' ' .. v[10000])"),
            "10000 10000");
}

TEST_F(LibJsonTest, RoundTrips) {
  for (const char* text :
       {R"({"alg":"RS256","typ":"JWT"})", R"([1,2,[3,[4,[]]],{"k":null}])",
        R"({"exp":1767225600,"iat":1767222000,"scope":"read write","sub":"user-42"})",
        R"(["\u0000\u001f\"\\","é"])", R"([0.5,-1e-07,123456789012])"}) {
    EXPECT_EQ(reencode(text), text);
  }
}

TEST_F(LibJsonTest, RefusesMalformedText) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[1,2,]", "unexpected ']' at byte 6"},
      {R"({"a":1,})", "expected a string key, got '}' at byte 8"},
      {R"({"a" 1})", "expected ':', got '1' at byte 6"},
      {"[1 2]", "expected ',' or ']', got '2' at byte 4"},
      {R"(["\x"])", "invalid escape at byte 3"},
      {R"(["\u12"])", "invalid \\u escape at byte 3"},
      {R"(["\ud800"])", "lone high surrogate at byte 3"},
      {R"(["\ud800\u0041"])", "lone high surrogate at byte 3"},
      {R"(["\udc00"])", "lone low surrogate at byte 3"},
      {"[\"a\tb\"]", "unescaped control character in string at byte 4"},
      {R"(["abc)", "unterminated string at byte 2"},
      {"[01]", "leading zero in number at byte 2"},
      {"[-01]", "leading zero in number at byte 2"},
      {"[1.]", "digits expected after '.' at byte 2"},
      {"[.5]", "unexpected '.' at byte 2"},
      {"[1e]", "digits expected in exponent at byte 2"},
      {"[+1]", "unexpected '+' at byte 2"},
      {"[1e999]", "number out of range at byte 2"},
      {"[tru]", "invalid literal at byte 2"},
      {"[NaN]", "unexpected 'N' at byte 2"},
      {"{'a':1}", "expected a string key, got ''' at byte 2"},
      {"[1] x", "unexpected 'x' after the value at byte 5"},
      {"", "unexpected end of text at byte 1"},
      {"   ", "unexpected end of text at byte 4"},
      {"[1", "expected ',' or ']', got end of text at byte 3"},
      {"\"\xff\"", "invalid UTF-8 at byte 2"},
      {"\"\xc0\xaf\"", "invalid UTF-8 at byte 2"},       // overlong '/'
      {"\"\xed\xa0\x80\"", "invalid UTF-8 at byte 2"},   // an encoded surrogate
  };
  for (const auto& [text, message] : bad) EXPECT_EQ(decode_error(text), message) << text;
}

TEST_F(LibJsonTest, DepthBombIsRefusedNotOverflowed) {
  EXPECT_EQ(run("return select(2, json.decode(('['):rep(100000)))"),
            "nesting deeper than 512 at byte 513");
  EXPECT_EQ(run("return select(2, json.decode(('{\"a\":'):rep(600) .. '1' .. ('}'):rep(600)))"),
            "nesting deeper than 512 at byte 2561");
  // 512 levels are fine.
  EXPECT_EQ(run("local v = assert(json.decode(('['):rep(512) .. (']'):rep(512))) return #v"), "1");
}

TEST_F(LibJsonTest, NonStringInputIsNilAndAMessage) {
  EXPECT_EQ(run("return select(2, json.decode(42))"), "expected a string, got number");
}

TEST_F(LibJsonTest, UserPluginsCanRequireIt) {
  write_plugin("echo", plugin_source("echo", "access", R"(
    local json = require 'turnpike.json'
    local v = assert(json.decode('{"user":"bob","ids":[1,2]}'))
    turnpike.exit(200, json.encode({ user = v.user, count = #v.ids })))"));
  auto gen = load({"echo"});
  Ref ctx = vm().new_ctx();
  CallResult r = run_call(gen, 0, Phase::access, Ref(), ctx);
  EXPECT_EQ(r.status, CallStatus::exit) << r.error;
  EXPECT_EQ(r.exit_body, R"({"count":2,"user":"bob"})");
}

}  // namespace
}  // namespace turnpike::lua::test
