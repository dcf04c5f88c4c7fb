// turnpike.compress (plugins/lib/turnpike/compress.lua over src/lua/compress.cc): gzip and
// brotli streams round-trip through zlib's and brotli's own decoders, in one write or in many
// small ones; finish ends a stream; streams are freed by free, by finish and by the collector;
// the flush policy keeps output coming for input that compresses to nothing for long stretches.
#include <brotli/decode.h>
#include <zlib.h>

#include <random>

#include "lua_test_util.h"
#include "turnpike/lua/compress.h"

namespace turnpike::lua::test {
namespace {

std::string gunzip(const std::string& in) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out;
  char buf[65536];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // truncated input
  }
  EXPECT_EQ(rc, Z_STREAM_END) << "gzip stream incomplete";
  inflateEnd(&z);
  return out;
}

std::string unbrotli(const std::string& in) {
  BrotliDecoderState* d = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
  std::string out;
  size_t avail_in = in.size();
  const auto* next_in = reinterpret_cast<const uint8_t*>(in.data());
  BrotliDecoderResult rc = BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT;
  uint8_t buf[65536];
  while (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) {
    size_t avail_out = sizeof(buf);
    uint8_t* next_out = buf;
    rc = BrotliDecoderDecompressStream(d, &avail_in, &next_in, &avail_out, &next_out, nullptr);
    out.append(reinterpret_cast<char*>(buf), sizeof(buf) - avail_out);
  }
  EXPECT_EQ(rc, BROTLI_DECODER_RESULT_SUCCESS) << "brotli stream incomplete or invalid";
  BrotliDecoderDestroyInstance(d);
  return out;
}

std::string decode(int algorithm, const std::string& in) {
  return algorithm == TP_COMPRESS_GZIP ? gunzip(in) : unbrotli(in);
}

// JSON-like text with some variety, so the compressors have real work (deterministic).
std::string sample(size_t size) {
  std::mt19937 rng(42);
  std::string s;
  while (s.size() < size) {
    s += R"({"id":)" + std::to_string(rng() % 100000) + R"(,"name":"user)" + std::to_string(rng() % 977) +
         R"(","active":)" + (rng() % 2 ? "true" : "false") + "},\n";
  }
  s.resize(size);
  return s;
}

// Writes `input` in pieces of `piece` bytes (the last write finishes), returns all output.
std::string compress_pieces(int algorithm, int level, const std::string& input, size_t piece) {
  char err[128];
  tp_compress* s = tp_compress_new(algorithm, level, err, sizeof(err));
  EXPECT_NE(s, nullptr) << err;
  std::string all;
  size_t at = 0;
  do {
    size_t n = std::min(piece, input.size() - at);
    const char* out = nullptr;
    size_t out_len = 0;
    bool last = at + n == input.size();
    EXPECT_EQ(tp_compress_write(s, input.data() + at, n, last ? 1 : 0, &out, &out_len), 0);
    all.append(out ? out : "", out_len);
    at += n;
  } while (at < input.size());
  tp_compress_free(s);
  return all;
}

class CompressStreamTest : public ::testing::TestWithParam<int> {};

TEST_P(CompressStreamTest, RoundTripsInOneWrite) {
  std::string input = sample(1 << 20);
  std::string out = compress_pieces(GetParam(), 5, input, input.size());
  EXPECT_LT(out.size(), input.size() / 3);
  EXPECT_EQ(decode(GetParam(), out), input);
}

TEST_P(CompressStreamTest, RoundTripsInManySmallWrites) {
  std::string input = sample(300'000);
  EXPECT_EQ(decode(GetParam(), compress_pieces(GetParam(), 5, input, 7)), input);
}

TEST_P(CompressStreamTest, EmptyInputIsAValidStream) {
  std::string out = compress_pieces(GetParam(), 5, "", 1);
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(decode(GetParam(), out), "");
}

TEST_P(CompressStreamTest, IncompressibleInputRoundTrips) {
  std::mt19937 rng(7);
  std::string input(2 << 20, '\0');
  for (char& c : input) c = static_cast<char>(rng());
  EXPECT_EQ(decode(GetParam(), compress_pieces(GetParam(), 5, input, 65536)), input);
}

TEST_P(CompressStreamTest, WritesAfterFinishAreRefused) {
  char err[128];
  tp_compress* s = tp_compress_new(GetParam(), 4, err, sizeof(err));
  const char* out = nullptr;
  size_t len = 0;
  ASSERT_EQ(tp_compress_write(s, "abc", 3, 1, &out, &len), 0);
  EXPECT_EQ(tp_compress_write(s, "abc", 3, 0, &out, &len), TP_COMPRESS_FINISHED);
  EXPECT_EQ(len, 0u);
  tp_compress_free(s);
}

// 4 MiB of zeros compresses to almost nothing, so a compressor could hold it all back; the flush
// policy makes output appear at least every kCompressFlushBytes of input.
TEST_P(CompressStreamTest, OutputKeepsComingForHighlyCompressibleInput) {
  char err[128];
  tp_compress* s = tp_compress_new(GetParam(), 5, err, sizeof(err));
  std::string zeros(16384, '\0');
  size_t since_output = 0, max_since_output = 0;
  std::string all;
  for (int i = 0; i < 256; ++i) {
    const char* out = nullptr;
    size_t len = 0;
    ASSERT_EQ(tp_compress_write(s, zeros.data(), zeros.size(), i == 255 ? 1 : 0, &out, &len), 0);
    all.append(out, len);
    since_output = len ? 0 : since_output + zeros.size();
    max_since_output = std::max(max_since_output, since_output);
  }
  tp_compress_free(s);
  EXPECT_LT(max_since_output, kCompressFlushBytes + zeros.size());
  EXPECT_EQ(decode(GetParam(), all), std::string(256 * zeros.size(), '\0'));
}

TEST_P(CompressStreamTest, LiveCountFollowsNewAndFree) {
  int64_t before = tp_compress_live();
  char err[128];
  tp_compress* a = tp_compress_new(GetParam(), 1, err, sizeof(err));
  tp_compress* b = tp_compress_new(GetParam(), 1, err, sizeof(err));
  EXPECT_EQ(tp_compress_live(), before + 2);
  tp_compress_free(a);  // unfinished
  tp_compress_free(b);
  tp_compress_free(nullptr);
  EXPECT_EQ(tp_compress_live(), before);
}

// A recycled stream (the per-thread gzip cache) starts a fresh, independent stream.
TEST_P(CompressStreamTest, ARecycledStreamStartsAfresh) {
  std::string first = sample(100'000), second = sample(50'000) + "tail";
  compress_pieces(GetParam(), 6, first.substr(0, 40'000), 1000);
  EXPECT_EQ(decode(GetParam(), compress_pieces(GetParam(), 6, second, 4096)), second);
  char err[128];
  tp_compress* s = tp_compress_new(GetParam(), 6, err, sizeof(err));
  const char* out = nullptr;
  size_t len = 0;
  tp_compress_write(s, first.data(), 30'000, 0, &out, &len);
  tp_compress_free(s);  // abandoned half way
  EXPECT_EQ(decode(GetParam(), compress_pieces(GetParam(), 6, second, 4096)), second);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, CompressStreamTest, ::testing::Values(TP_COMPRESS_GZIP, TP_COMPRESS_BROTLI),
                         [](const auto& info) { return info.param == TP_COMPRESS_GZIP ? "gzip" : "brotli"; });

TEST(CompressStreamErrors, BadArgumentsAreRefusedWithAMessage) {
  char err[128];
  EXPECT_EQ(tp_compress_new(TP_COMPRESS_GZIP, 0, err, sizeof(err)), nullptr);
  EXPECT_STREQ(err, "gzip level must be 1-9, got 0");
  EXPECT_EQ(tp_compress_new(TP_COMPRESS_BROTLI, 12, err, sizeof(err)), nullptr);
  EXPECT_STREQ(err, "brotli level must be 0-11, got 12");
  EXPECT_EQ(tp_compress_new(9, 1, err, sizeof(err)), nullptr);
  EXPECT_STREQ(err, "unknown algorithm 9");
}

class LibCompressTest : public LuaTest {
 protected:
  std::string run(const std::string& body) { return eval("local compress = require 'turnpike.compress'\n" + body); }
  // Runs `body`, whose result is binary, through hex (the chunk's result is read as a C string).
  std::string run_binary(const std::string& body) {
    std::string hex = run("local function f()\n" + body +
                          "\nend\nreturn (f():gsub('.', function(c) return string.format('%02x', c:byte()) end))");
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
  }
};

TEST_F(LibCompressTest, StreamsRoundTripFromLua) {
  std::string gz = run_binary(R"(
    local s = assert(compress.new('gzip', 5))
    local parts = {}
    for i = 1, 2000 do parts[#parts + 1] = assert(s:write('line ' .. i .. '\n')) end
    parts[#parts + 1] = assert(s:finish('end'))
    return table.concat(parts))");
  std::string br = run_binary(R"(
    local s = assert(compress.new('br', 4))
    local a = assert(s:write(string.rep('hello brotli ', 1000)))
    return a .. assert(s:finish()))");
  std::string expected;
  for (int i = 1; i <= 2000; ++i) expected += "line " + std::to_string(i) + "\n";
  EXPECT_TRUE(gunzip(gz) == expected + "end");
  std::string hello;
  for (int i = 0; i < 1000; ++i) hello += "hello brotli ";
  EXPECT_TRUE(unbrotli(br) == hello);
}

TEST_F(LibCompressTest, ErrorsAreNilAndAMessage) {
  EXPECT_EQ(run(R"(
    local a, e1 = compress.new('zstd', 3)
    local b, e2 = compress.new('gzip', 10)
    local c, e3 = compress.new('br', 1.5)
    local s = assert(compress.new('gzip', 1))
    s:finish('x')
    local d, e4 = s:write('y')
    return table.concat({ tostring(a), e1, tostring(b), e2, tostring(c), e3, tostring(d), e4 }, '|'))"),
            "nil|unknown algorithm zstd (gzip, br)|nil|gzip level must be 1-9, got 10|nil|level must be an integer, "
            "got 1.5|nil|stream is finished");
}

TEST_F(LibCompressTest, StreamsAreFreedByFinishFreeAndTheCollector) {
  vm().collect_garbage();
  int64_t before = tp_compress_live();
  EXPECT_EQ(run(R"(
    local live0 = compress.live()
    local a = compress.new('gzip', 5) a:write('x') a:finish()
    local b = compress.new('br', 4) b:write('x') b:free() b:free()
    return tostring(compress.live() - live0))"),
            "0");
  EXPECT_EQ(tp_compress_live(), before);
  run("for i = 1, 50 do local s = compress.new(i % 2 == 0 and 'gzip' or 'br', 1) s:write('abandoned') end");
  EXPECT_GT(tp_compress_live(), before);
  vm().collect_garbage();
  EXPECT_EQ(tp_compress_live(), before);
}

}  // namespace
}  // namespace turnpike::lua::test
