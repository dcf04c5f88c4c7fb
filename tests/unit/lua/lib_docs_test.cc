// The examples of docs/plugins.md, "Library modules", give what the page says they give.
#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

using LibDocsTest = LuaTest;

TEST_F(LibDocsTest, JsonExample) {
  EXPECT_EQ(eval(R"(
    local json = require "turnpike.json"
    local claims, err = json.decode('{"a":1,}')
    assert(claims == nil)
    return err .. ' ' .. json.encode({ error = "forbidden", allowed = json.empty_array }))"),
            R"(expected a string key, got '}' at byte 8 {"allowed":[],"error":"forbidden"})");
}

TEST_F(LibDocsTest, Base64Example) {
  EXPECT_EQ(eval(R"(
    local base64 = require "turnpike.base64"
    local _, err = base64.decode("aG*/")
    return table.concat({ base64.encode("hi?"), base64.decode("aGk/"), base64.encode_url("hi?"),
                          base64.decode_url("aGk_"), err }, ' '))"),
            "aGk/ hi? aGk_ hi? invalid base64 at byte 3");
}

TEST_F(LibDocsTest, CryptoExample) {
  EXPECT_EQ(eval(R"(
    local crypto = require "turnpike.crypto"
    return crypto.hex(crypto.sha256("abc")):sub(1, 8))"),
            "ba7816bf");
}

TEST_F(LibDocsTest, RegexExample) {
  EXPECT_EQ(eval(R"(
    local regex = require "turnpike.regex"
    local re = assert(regex.compile([[^/users/(?<id>\d+)(/.*)?$]], "i"))
    local m = re:match("/users/42/orders")
    local from = re:find("GET /users/7")
    local kv = assert(regex.compile([[(?<key>\w+)=(\w+)]]))
    local out, n = kv:gsub("a=1&b=2", "${key}:$2")
    local _, err = regex.compile("a(b")
    return table.concat({ m[0], m[1], m[2], m.id, tostring(from), out, n, err }, ' '))"),
            "/users/42/orders 42 /orders 42 nil a:1&b:2 2 missing closing parenthesis at offset 3");
}

}  // namespace
}  // namespace turnpike::lua::test
