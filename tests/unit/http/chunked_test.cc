// Chunked decoder (RFC 9112 §7.1): decoding under every split of the input, zero-copy views,
// strict chunk-size / line-ending / trailer rules, limits; and the chunk-header writer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "turnpike/http/chunked.h"

namespace turnpike::http {
namespace {

struct Decoded {
  std::string body;
  bool done = false;
  bool failed = false;
  size_t consumed = 0;  // bytes of the input consumed in total
  std::string error;
};

// Feeds `in` in pieces of `piece` bytes (the last one shorter), as reads from a socket would.
Decoded decode(std::string_view in, size_t piece = SIZE_MAX, ChunkedDecoder::Limits limits = {}) {
  ChunkedDecoder decoder(limits);
  Decoded out;
  std::vector<std::string_view> data;
  size_t pos = 0;
  while (pos < in.size() && !decoder.done() && !decoder.failed()) {
    const std::string_view chunk = in.substr(pos, piece);
    data.clear();
    const size_t n = decoder.feed(chunk, data);
    for (std::string_view d : data) {
      EXPECT_GE(d.data(), chunk.data());
      EXPECT_LE(d.data() + d.size(), chunk.data() + n);
      out.body.append(d);
    }
    pos += n;
    if (n < chunk.size()) break;
  }
  out.done = decoder.done();
  out.failed = decoder.failed();
  out.consumed = pos;
  out.error = std::string(decoder.error());
  EXPECT_EQ(decoder.body_bytes(), out.body.size());
  return out;
}

// The same input decoded at once, in every piece size up to 8, and split at every position.
void expect_same_under_any_split(std::string_view in) {
  const Decoded whole = decode(in);
  for (size_t piece = 1; piece <= 8; ++piece) {
    const Decoded d = decode(in, piece);
    EXPECT_EQ(d.body, whole.body) << "piece " << piece;
    EXPECT_EQ(d.done, whole.done) << "piece " << piece;
    EXPECT_EQ(d.failed, whole.failed) << "piece " << piece;
    EXPECT_EQ(d.consumed, whole.consumed) << "piece " << piece;
  }
  for (size_t at = 0; at <= in.size(); ++at) {
    ChunkedDecoder decoder;
    std::vector<std::string_view> data;
    std::string body;
    size_t n = decoder.feed(in.substr(0, at), data);
    if (n == at && !decoder.done() && !decoder.failed()) n += decoder.feed(in.substr(at), data);
    for (std::string_view d : data) body.append(d);
    EXPECT_EQ(body, whole.body) << "split at " << at;
    EXPECT_EQ(decoder.done(), whole.done) << "split at " << at;
    EXPECT_EQ(n, whole.consumed) << "split at " << at;
  }
}

TEST(ChunkedDecoder, DecodesChunksAndStopsAtTheEnd) {
  const std::string in = "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nNEXT";
  const Decoded d = decode(in);
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "hello, world");
  EXPECT_EQ(in.substr(d.consumed), "NEXT");
  expect_same_under_any_split(in);
}

TEST(ChunkedDecoder, ReportsDataAsViewsIntoTheInput) {
  const std::string in = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  ChunkedDecoder decoder;
  std::vector<std::string_view> data;
  ASSERT_EQ(decoder.feed(in, data), in.size());
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[0].data(), in.data() + 3);
  EXPECT_EQ(data[1], "de");
}

TEST(ChunkedDecoder, AcceptsHexInEitherCaseAndLeadingZeros) {
  const std::string body(0x1a, 'x');
  EXPECT_EQ(decode("1a\r\n" + body + "\r\n0\r\n\r\n").body, body);
  EXPECT_EQ(decode("1A\r\n" + body + "\r\n000\r\n\r\n").body, body);
  EXPECT_EQ(decode("001A\r\n" + body + "\r\n0\r\n\r\n").body, body);
}

TEST(ChunkedDecoder, AcceptsAndSkipsExtensions) {
  const std::string in = "5;name=value;flag;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n";
  const Decoded d = decode(in);
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "hello");
  expect_same_under_any_split(in);
}

TEST(ChunkedDecoder, AcceptsTrailerFields) {
  const std::string in = "2\r\nhi\r\n0\r\nChecksum: abc\r\nX-Other:\t1 2 \r\n\r\nrest";
  const Decoded d = decode(in);
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "hi");
  EXPECT_EQ(in.substr(d.consumed), "rest");
  expect_same_under_any_split(in);
}

TEST(ChunkedDecoder, EmptyBody) {
  const Decoded d = decode("0\r\n\r\n");
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "");
}

TEST(ChunkedDecoder, ConsumesNothingOnceDone) {
  ChunkedDecoder decoder;
  std::vector<std::string_view> data;
  ASSERT_EQ(decoder.feed("0\r\n\r\n", data), 5u);
  EXPECT_EQ(decoder.feed("1\r\na\r\n", data), 0u);
  EXPECT_TRUE(decoder.done());
}

TEST(ChunkedDecoder, ResetStartsANewBody) {
  ChunkedDecoder decoder;
  std::vector<std::string_view> data;
  decoder.feed("1\r\na\r\n0\r\n\r\n", data);
  ASSERT_TRUE(decoder.done());
  decoder.reset();
  EXPECT_EQ(decoder.body_bytes(), 0u);
  EXPECT_FALSE(decoder.done());
  data.clear();
  EXPECT_EQ(decoder.feed("2\r\nbc\r\n0\r\n\r\n", data), 12u);
  EXPECT_TRUE(decoder.done());
}

TEST(ChunkedDecoder, SixteenHexDigitsAreAccepted) {
  ChunkedDecoder decoder;
  std::vector<std::string_view> data;
  EXPECT_EQ(decoder.feed("ffffffffffffffff\r\nabc", data), 21u);
  EXPECT_FALSE(decoder.failed());
  EXPECT_EQ(decoder.body_bytes(), 3u);
}

// ---------------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------------

void expect_fails(std::string_view in, size_t consumed_before_error) {
  for (size_t piece : {SIZE_MAX, size_t{1}, size_t{3}}) {
    const Decoded d = decode(in, piece);
    EXPECT_TRUE(d.failed) << "input: " << in << " piece " << piece;
    EXPECT_FALSE(d.error.empty());
    EXPECT_EQ(d.consumed, consumed_before_error) << "input: " << in << " piece " << piece;
  }
}

TEST(ChunkedDecoder, RejectsEmptyChunkSize) {
  expect_fails("\r\nhello\r\n0\r\n\r\n", 0);
  expect_fails(";ext\r\n", 0);
}

TEST(ChunkedDecoder, RejectsWhitespaceSignsAndHexPrefix) {
  expect_fails(" 5\r\nhello\r\n", 0);
  expect_fails("\t5\r\nhello\r\n", 0);
  expect_fails("+5\r\nhello\r\n", 0);
  expect_fails("-5\r\nhello\r\n", 0);
  expect_fails("0x5\r\nhello\r\n", 1);
  expect_fails("5 \r\nhello\r\n", 1);
  expect_fails("5 ;a\r\nhello\r\n", 1);
  expect_fails("5g\r\nhello\r\n", 1);
}

TEST(ChunkedDecoder, RejectsMoreThanSixteenHexDigits) {
  expect_fails("00000000000000001\r\nx\r\n", 16);
  expect_fails("10000000000000000\r\n", 16);
}

TEST(ChunkedDecoder, RejectsBareLfAndBareCrAfterSize) {
  expect_fails("5\nhello\r\n0\r\n\r\n", 1);
  expect_fails("5\rhello\r\n0\r\n\r\n", 2);
  expect_fails("5;ext\nhello\r\n", 5);
}

TEST(ChunkedDecoder, RejectsControlBytesInExtension) {
  expect_fails(std::string("5;a\0b\r\nhello\r\n", 14), 3);
  expect_fails("5;a\x7f\r\nhello\r\n", 3);
}

TEST(ChunkedDecoder, RejectsDataNotFollowedByCrlf) {
  expect_fails("5\r\nhelloX\r\n0\r\n\r\n", 8);
  expect_fails("5\r\nhello\n0\r\n\r\n", 8);
  expect_fails("5\r\nhello\rX0\r\n\r\n", 9);
}

TEST(ChunkedDecoder, RejectsMalformedTrailers) {
  expect_fails("0\r\n Folded: x\r\n\r\n", 3);       // obs-fold
  expect_fails("0\r\nX : y\r\n\r\n", 4);             // space before colon
  expect_fails("0\r\nX: y\n\r\n", 7);                // bare LF
  expect_fails("0\r\nX: y\rz\r\n\r\n", 8);           // bare CR
  expect_fails("0\r\n\n", 3);                        // bare LF as the final line
  expect_fails("0\r\n\rX", 4);                       // bare CR as the final line
  expect_fails("0\r\nX(: y\r\n\r\n", 4);             // not a token
  expect_fails("0\r\n:y\r\n\r\n", 3);                // empty name
  expect_fails("0\r\nX: \x01\r\n\r\n", 6);           // control byte in value
}

TEST(ChunkedDecoder, ExtensionAtTheLimitPassesOneOverFails) {
  ChunkedDecoder::Limits limits;
  limits.max_extension_bytes = 10;
  const std::string ok = "1;" + std::string(9, 'a') + "\r\nx\r\n0\r\n\r\n";  // ";" + 9 = 10
  EXPECT_TRUE(decode(ok, SIZE_MAX, limits).done);
  const std::string over = "1;" + std::string(10, 'a') + "\r\nx\r\n0\r\n\r\n";
  const Decoded d = decode(over, 1, limits);
  EXPECT_TRUE(d.failed);
  EXPECT_EQ(d.error, "chunk extension too long");
}

TEST(ChunkedDecoder, TrailerSectionAtTheLimitPassesOneOverFails) {
  ChunkedDecoder::Limits limits;
  limits.max_trailer_bytes = 12;
  const std::string trailer = "A: 1234\r\n";  // 9 bytes + final CRLF = 11
  EXPECT_TRUE(decode("0\r\n" + trailer + "\r\n", SIZE_MAX, limits).done);
  EXPECT_TRUE(decode("0\r\nA: 12345\r\n\r\n", SIZE_MAX, limits).done);  // exactly 12
  const Decoded d = decode("0\r\nA: 123456\r\n\r\n", SIZE_MAX, limits);  // 13
  EXPECT_TRUE(d.failed);
  EXPECT_EQ(d.error, "trailer section too large");
}

TEST(ChunkedDecoder, StateNamesArePrintable) {
  EXPECT_EQ(to_string(ChunkedDecoder::State::trailer_value), "trailer_value");
  EXPECT_EQ(to_string(ChunkedDecoder::State::failed), "failed");
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

TEST(ChunkHeader, WritesLowerCaseHexAndCrlf) {
  char buf[18];
  EXPECT_EQ(std::string_view(buf, write_chunk_header(buf, 0)), "0\r\n");
  EXPECT_EQ(std::string_view(buf, write_chunk_header(buf, 1)), "1\r\n");
  EXPECT_EQ(std::string_view(buf, write_chunk_header(buf, 0xabc)), "abc\r\n");
  EXPECT_EQ(std::string_view(buf, write_chunk_header(buf, 4096)), "1000\r\n");
  EXPECT_EQ(std::string_view(buf, write_chunk_header(buf, UINT64_MAX)), "ffffffffffffffff\r\n");
}

TEST(ChunkHeader, EncodedBodyDecodesBack) {
  std::string wire;
  char buf[18];
  for (const std::string& part : {std::string("a"), std::string(300, 'b'), std::string(17, 'c')}) {
    wire.append(buf, write_chunk_header(buf, part.size()));
    wire += part;
    wire += kChunkTrailer;
  }
  wire += kLastChunk;
  const Decoded d = decode(wire);
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "a" + std::string(300, 'b') + std::string(17, 'c'));
  EXPECT_EQ(d.consumed, wire.size());
}

}  // namespace
}  // namespace turnpike::http
