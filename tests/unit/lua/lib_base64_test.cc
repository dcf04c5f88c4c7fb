// turnpike.base64 (plugins/lib/turnpike/base64.lua): the RFC 4648 §10 test vectors, the URL
// alphabet, binary round trips, and every malformed input decode must refuse.
#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

class LibBase64Test : public LuaTest {
 protected:
  std::string run(const std::string& body) {
    return eval("local base64 = require 'turnpike.base64'\n" + body);
  }
};

// RFC 4648 §10.
const std::vector<std::pair<std::string, std::string>> kVectors = {
    {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};

TEST_F(LibBase64Test, Rfc4648Vectors) {
  for (const auto& [plain, encoded] : kVectors) {
    EXPECT_EQ(run("return base64.encode('" + plain + "')"), encoded);
    EXPECT_EQ(run("return base64.decode('" + encoded + "')"), plain);
  }
}

TEST_F(LibBase64Test, UrlAlphabetWithoutPadding) {
  // 0xfb 0xff 0xbf encodes to "+/+/" in the standard alphabet.
  EXPECT_EQ(run("return base64.encode('\\251\\255\\191')"), "+/+/");
  EXPECT_EQ(run("return base64.encode_url('\\251\\255\\191')"), "-_-_");
  EXPECT_EQ(run("return base64.encode_url('f') .. ' ' .. base64.encode_url('fo')"), "Zg Zm8");
  EXPECT_EQ(run("return base64.decode_url('-_-_') == '\\251\\255\\191'"), "true");
}

TEST_F(LibBase64Test, DecodeUrlAcceptsPaddingOrNone) {
  EXPECT_EQ(run("return base64.decode_url('Zm9vYg') .. base64.decode_url('Zm9vYg==')"),
            "foobfoob");
  EXPECT_EQ(run("return base64.decode_url('Zm9vYmE') .. base64.decode_url('Zm9vYmE=')"),
            "foobafooba");
}

TEST_F(LibBase64Test, EveryByteValueRoundTrips) {
  EXPECT_EQ(run(R"(
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    local all = table.concat(t)
    for n = 0, 256 do  -- every length mod 3, and the 256-byte buffer growing
      local s = all:sub(1, n) .. all:sub(1, n)
      assert(base64.decode(base64.encode(s)) == s, 'std ' .. n)
      assert(base64.decode_url(base64.encode_url(s)) == s, 'url ' .. n)
    end
    return 'ok')"),
            "ok");
}

TEST_F(LibBase64Test, DecodeRefusesMalformedInput) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"Zm9", "invalid base64 length 3"},          // std needs padding
      {"Zm9v\\n", "invalid base64 length 5"},      // no whitespace
      {"Zm9vY", "invalid base64 length 5"},        // one char left over
      {"Zm*v", "invalid base64 at byte 3"},        // outside the alphabet
      {"Zm9-", "invalid base64 at byte 4"},        // URL alphabet in std
      {"Z===", "invalid base64 at byte 2"},        // three pads
      {"Zg=", "invalid base64 at byte 3"},         // padding that does not complete a group
      {"Zg==Zg==", "invalid base64 at byte 3"},    // padding in the middle
      {"=", "invalid base64 at byte 1"},
  };
  for (const auto& [input, message] : bad) {
    EXPECT_EQ(run("local v, err = base64.decode('" + input + "') return tostring(v) .. ' ' .. err"),
              "nil " + message)
        << input;
  }
  EXPECT_EQ(run("local v, err = base64.decode_url('Zm+v') return tostring(v) .. ' ' .. err"),
            "nil invalid base64 at byte 3");
  EXPECT_EQ(run("local v, err = base64.decode_url('Z') return tostring(v) .. ' ' .. err"),
            "nil invalid base64 length 1");
}

TEST_F(LibBase64Test, NonStringArgumentIsAnError) {
  std::string error;
  vm().run_chunk("require('turnpike.base64').encode({})", error);
  EXPECT_NE(error.find("base64: expected a string, got table"), std::string::npos) << error;
}

}  // namespace
}  // namespace turnpike::lua::test
