// libFuzzer target: the response head parser and, for chunked responses, the body decoder.
//
// Input: byte 0 picks the limits (bits 0-1) and the request method (bit 2: HEAD, bit 3: CONNECT);
// the rest is what an upstream sent. Invariants: as for requests, plus the framing rules of
// RFC 9112 §6.3.
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
  ResponseHead head;
  std::vector<Header> headers;
};

Result parse_at_once(const char* data, size_t len, const ParserLimits& limits, Method method) {
  Result r;
  ParseState state;
  r.status = parse_response_head(data, len, limits, state, method, r.head, r.headers, r.error);
  return r;
}

Result parse_in_steps(const char* data, size_t len, const ParserLimits& limits, Method method,
                      size_t step) {
  Result r;
  ParseState state;
  for (size_t n = step < len ? step : len; ; n = (len - n > step) ? n + step : len) {
    r.status = parse_response_head(data, n, limits, state, method, r.head, r.headers, r.error);
    if (r.status != ParseStatus::incomplete || n == len) break;
  }
  return r;
}

void check_same(const Result& a, const Result& b, const char* base) {
  FUZZ_CHECK(a.status == b.status);
  FUZZ_CHECK(a.error == b.error);
  if (a.status != ParseStatus::complete) return;
  const ResponseHead& x = a.head;
  const ResponseHead& y = b.head;
  FUZZ_CHECK(x.head_length == y.head_length);
  FUZZ_CHECK(x.status == y.status && x.version_minor == y.version_minor);
  FUZZ_CHECK(x.reason == y.reason && offset_of(x.reason, base) == offset_of(y.reason, base));
  FUZZ_CHECK(x.framing == y.framing && x.content_length == y.content_length);
  FUZZ_CHECK(x.keep_alive == y.keep_alive);
  check_same_headers(a.headers, base, b.headers, base);
}

void check_complete(const Result& r, const char* data, size_t len, const ParserLimits& limits,
                    Method method) {
  const ResponseHead& h = r.head;
  FUZZ_CHECK(r.error == ParseError::none);
  FUZZ_CHECK(h.head_length >= 4 && h.head_length <= len);
  FUZZ_CHECK(h.head_length <= limits.max_header_bytes);
  FUZZ_CHECK(std::string_view(data + h.head_length - 4, 4) == "\r\n\r\n");
  FUZZ_CHECK(std::string_view(data, 7) == "HTTP/1.");
  FUZZ_CHECK(h.status >= 100 && h.status <= 599);
  FUZZ_CHECK(h.version_minor <= 1);
  FUZZ_CHECK(inside(h.reason, data, h.head_length));
  for (char c : h.reason) FUZZ_CHECK(c != '\r' && c != '\n' && c != '\0');
  // RFC 9112 §6.3 rules 1-2: no body for HEAD, 1xx, 204, 304, or a 2xx to CONNECT.
  const bool bodiless = method == Method::head || h.status < 200 || h.status == 204 ||
                        h.status == 304 || (method == Method::connect && h.status < 300);
  if (bodiless) FUZZ_CHECK(h.framing == BodyFraming::none);
  else FUZZ_CHECK(h.framing != BodyFraming::none);
  if (h.framing == BodyFraming::until_close) FUZZ_CHECK(!h.keep_alive);
  if (h.framing == BodyFraming::chunked) FUZZ_CHECK(h.version_minor == 1);
  check_headers(r.headers, data, h.head_length, limits);
}

}  // namespace
}  // namespace turnpike::http::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  using namespace turnpike::http;
  using namespace turnpike::http::fuzz;
  if (size == 0) return 0;
  const ParserLimits limits = pick_limits(raw[0]);
  const Method method = (raw[0] & 4) ? Method::head : (raw[0] & 8) ? Method::connect : Method::get;
  const char* data = reinterpret_cast<const char*>(raw + 1);
  const size_t len = size - 1;

  const Result whole = parse_at_once(data, len, limits, method);
  switch (whole.status) {
    case ParseStatus::complete:
      check_complete(whole, data, len, limits, method);
      break;
    case ParseStatus::incomplete:
      FUZZ_CHECK(whole.error == ParseError::none);
      FUZZ_CHECK(len < limits.max_header_bytes);
      break;
    case ParseStatus::error:
      FUZZ_CHECK(whole.error != ParseError::none);
      FUZZ_CHECK(whole.error != ParseError::uri_too_long);  // a request-only error
      break;
  }

  check_same(whole, parse_in_steps(data, len, limits, method, 1), data);
  check_same(whole, parse_in_steps(data, len, limits, method, len / 2 + 1), data);

  if (whole.status == ParseStatus::complete) {
    check_same(whole, parse_at_once(data, whole.head.head_length, limits, method), data);
    if (whole.head.framing == BodyFraming::chunked) {
      check_chunked(std::string_view(data + whole.head.head_length, len - whole.head.head_length));
    }
  }
  return 0;
}
