// libFuzzer target: the request head parser, and what the proxy does next with a parsed head
// (split and normalize the target, decode a chunked body).
//
// Input: byte 0 picks the limits; the rest is what a client sent. Invariants: views stay inside
// the input, limits hold, the head alone parses the same as the head plus what follows it, and
// feeding byte by byte (or in two halves) gives exactly the same result as feeding at once.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_util.h"

namespace turnpike::http::fuzz {
namespace {

struct Result {
  ParseStatus status = ParseStatus::incomplete;
  ParseError error = ParseError::none;
  RequestHead head;
  std::vector<Header> headers;
};

Result parse_at_once(const char* data, size_t len, const ParserLimits& limits) {
  Result r;
  ParseState state;
  r.status = parse_request_head(data, len, limits, state, r.head, r.headers, r.error);
  return r;
}

// Feeds prefixes of growing length (`step` more bytes each time) until the parser decides.
Result parse_in_steps(const char* data, size_t len, const ParserLimits& limits, size_t step) {
  Result r;
  ParseState state;
  for (size_t n = step < len ? step : len; ; n = (len - n > step) ? n + step : len) {
    r.status = parse_request_head(data, n, limits, state, r.head, r.headers, r.error);
    if (r.status != ParseStatus::incomplete || n == len) break;
  }
  return r;
}

void check_same(const Result& a, const Result& b, const char* base) {
  FUZZ_CHECK(a.status == b.status);
  FUZZ_CHECK(a.error == b.error);
  if (a.status != ParseStatus::complete) return;
  const RequestHead& x = a.head;
  const RequestHead& y = b.head;
  FUZZ_CHECK(x.head_length == y.head_length);
  FUZZ_CHECK(x.method == y.method);
  FUZZ_CHECK(offset_of(x.method_name, base) == offset_of(y.method_name, base));
  FUZZ_CHECK(x.target == y.target && offset_of(x.target, base) == offset_of(y.target, base));
  FUZZ_CHECK(x.version_minor == y.version_minor);
  FUZZ_CHECK(x.host == y.host);
  FUZZ_CHECK(x.framing == y.framing && x.content_length == y.content_length);
  FUZZ_CHECK(x.keep_alive == y.keep_alive && x.upgrade == y.upgrade);
  FUZZ_CHECK(x.expect_continue == y.expect_continue);
  FUZZ_CHECK(x.unknown_expectation == y.unknown_expectation);
  check_same_headers(a.headers, base, b.headers, base);
}

void check_complete(const Result& r, const char* data, size_t len, const ParserLimits& limits) {
  const RequestHead& h = r.head;
  FUZZ_CHECK(r.error == ParseError::none);
  FUZZ_CHECK(h.head_length >= 4 && h.head_length <= len);
  FUZZ_CHECK(h.head_length <= limits.max_header_bytes);
  FUZZ_CHECK(std::string_view(data + h.head_length - 4, 4) == "\r\n\r\n");
  FUZZ_CHECK(!h.method_name.empty() && inside(h.method_name, data, h.head_length));
  FUZZ_CHECK(h.method == parse_method(h.method_name));
  FUZZ_CHECK(!h.target.empty() && inside(h.target, data, h.head_length));
  for (char c : h.target) FUZZ_CHECK(c > 0x20 && c < 0x7f);
  FUZZ_CHECK(h.version_minor <= 1);
  FUZZ_CHECK(inside(h.host, data, h.head_length));
  if (!h.host.empty()) {
    static std::string host;
    FUZZ_CHECK(parse_authority(h.host, host));
  }
  FUZZ_CHECK(h.framing != BodyFraming::until_close);
  if (h.framing == BodyFraming::chunked) FUZZ_CHECK(h.version_minor == 1);
  if (h.framing != BodyFraming::content_length) FUZZ_CHECK(h.content_length == 0);
  if (h.version_minor == 0) FUZZ_CHECK(!h.expect_continue);
  check_headers(r.headers, data, h.head_length, limits);
}

}  // namespace
}  // namespace turnpike::http::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  using namespace turnpike::http;
  using namespace turnpike::http::fuzz;
  if (size == 0) return 0;
  const ParserLimits limits = pick_limits(raw[0]);
  const char* data = reinterpret_cast<const char*>(raw + 1);
  const size_t len = size - 1;

  const Result whole = parse_at_once(data, len, limits);
  switch (whole.status) {
    case ParseStatus::complete:
      check_complete(whole, data, len, limits);
      break;
    case ParseStatus::incomplete:
      FUZZ_CHECK(whole.error == ParseError::none);
      FUZZ_CHECK(len < limits.max_header_bytes);
      break;
    case ParseStatus::error: {
      FUZZ_CHECK(whole.error != ParseError::none);
      const int status = status_for(whole.error);
      FUZZ_CHECK(status == 400 || status == 414 || status == 431);
      break;
    }
  }

  check_same(whole, parse_in_steps(data, len, limits, 1), data);
  check_same(whole, parse_in_steps(data, len, limits, len / 2 + 1), data);

  if (whole.status == ParseStatus::complete) {
    // The head parses the same without the bytes that follow it.
    check_same(whole, parse_at_once(data, whole.head.head_length, limits), data);
    check_target(whole.head.target);
    const std::string_view rest(data + whole.head.head_length, len - whole.head.head_length);
    if (whole.head.framing == BodyFraming::chunked) {
      ChunkedDecoder::Limits small;
      small.max_extension_bytes = 16;
      small.max_trailer_bytes = 64;
      check_chunked(rest, (raw[0] & 4) ? small : ChunkedDecoder::Limits{});
    }
  }
  return 0;
}
