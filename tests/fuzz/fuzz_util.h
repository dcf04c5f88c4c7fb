// Shared helpers for the libFuzzer targets: an always-on CHECK, limit presets picked by the
// first input byte, and the invariants every parsed head must satisfy.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "turnpike/http/chunked.h"
#include "turnpike/http/parser.h"
#include "turnpike/http/uri.h"

namespace turnpike::http::fuzz {

// Small limits as well as the defaults, so that the limit paths are reached with short inputs.
inline ParserLimits pick_limits(unsigned selector) {
  ParserLimits l;
  switch (selector & 3u) {
    case 1: l.max_request_line = 64; l.max_header_bytes = 512; l.max_headers = 8; break;
    case 2: l.max_request_line = 16; l.max_header_bytes = 64; l.max_headers = 2; break;
    case 3: l.max_request_line = 512; l.max_header_bytes = 128; l.max_headers = 4; break;
    default: break;
  }
  return l;
}

inline bool inside(std::string_view v, const char* base, size_t len) {
  return v.empty() || (v.data() >= base && v.data() + v.size() <= base + len);
}

// Offset of a view into base (or SIZE_MAX for an empty view, whose pointer means nothing).
inline size_t offset_of(std::string_view v, const char* base) {
  return v.empty() ? SIZE_MAX : static_cast<size_t>(v.data() - base);
}

inline void check_headers(const std::vector<Header>& headers, const char* base, size_t head_length,
                          const ParserLimits& limits) {
  FUZZ_CHECK(headers.size() <= limits.max_headers);
  for (const Header& h : headers) {
    FUZZ_CHECK(!h.name.empty());
    FUZZ_CHECK(inside(h.name, base, head_length));
    FUZZ_CHECK(inside(h.value, base, head_length));
    for (char c : h.name) FUZZ_CHECK(c != ':' && c != ' ' && c != '\r' && c != '\n');
    for (char c : h.value) FUZZ_CHECK(c != '\r' && c != '\n' && c != '\0');
    if (!h.value.empty()) {
      FUZZ_CHECK(h.value.front() != ' ' && h.value.front() != '\t');
      FUZZ_CHECK(h.value.back() != ' ' && h.value.back() != '\t');
    }
  }
}

inline void check_same_headers(const std::vector<Header>& a, const char* base_a,
                               const std::vector<Header>& b, const char* base_b) {
  FUZZ_CHECK(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    FUZZ_CHECK(offset_of(a[i].name, base_a) == offset_of(b[i].name, base_b));
    FUZZ_CHECK(a[i].name.size() == b[i].name.size());
    FUZZ_CHECK(offset_of(a[i].value, base_a) == offset_of(b[i].value, base_b));
    FUZZ_CHECK(a[i].value.size() == b[i].value.size());
  }
}

struct ChunkedResult {
  bool done = false;
  bool failed = false;
  size_t consumed = 0;
  std::string body;
};

// Decodes `in` fed in pieces of `piece` bytes, checking that each data view lies inside the
// piece it came from and that body_bytes() counts exactly the bytes reported.
inline ChunkedResult decode_chunked(std::string_view in, size_t piece,
                                    ChunkedDecoder::Limits limits = {}) {
  ChunkedDecoder decoder(limits);
  ChunkedResult r;
  std::vector<std::string_view> data;
  size_t pos = 0;
  while (pos < in.size() && !decoder.done() && !decoder.failed()) {
    const std::string_view chunk = in.substr(pos, piece);
    data.clear();
    const size_t n = decoder.feed(chunk, data);
    FUZZ_CHECK(n <= chunk.size());
    for (std::string_view d : data) {
      FUZZ_CHECK(!d.empty());
      FUZZ_CHECK(inside(d, chunk.data(), n));
      r.body.append(d);
    }
    pos += n;
    if (n < chunk.size()) {
      FUZZ_CHECK(decoder.done() || decoder.failed());
      break;
    }
  }
  r.done = decoder.done();
  r.failed = decoder.failed();
  r.consumed = pos;
  FUZZ_CHECK(!(r.done && r.failed));
  FUZZ_CHECK(r.failed == !decoder.error().empty());
  FUZZ_CHECK(decoder.body_bytes() == r.body.size());
  // Once finished, the decoder consumes nothing more.
  if (r.done || r.failed) {
    data.clear();
    FUZZ_CHECK(decoder.feed("0\r\n\r\n", data) == 0 && data.empty());
  }
  return r;
}

// The decoder gives the same answer whether fed at once, byte by byte, or in odd pieces.
inline void check_chunked(std::string_view in, ChunkedDecoder::Limits limits = {}) {
  const ChunkedResult whole = decode_chunked(in, SIZE_MAX, limits);
  for (size_t piece : {size_t{1}, size_t{3}, size_t{7}}) {
    const ChunkedResult split = decode_chunked(in, piece, limits);
    FUZZ_CHECK(split.done == whole.done);
    FUZZ_CHECK(split.failed == whole.failed);
    FUZZ_CHECK(split.consumed == whole.consumed);
    FUZZ_CHECK(split.body == whole.body);
  }
  if (whole.done) {
    // The body ends with CRLF (the last chunk's, or the trailer section's).
    FUZZ_CHECK(whole.consumed >= 5);
    FUZZ_CHECK(in.substr(whole.consumed - 2, 2) == "\r\n");
  }
}

// normalize_path invariants: rooted, never longer, no dot-segments or merged slashes left, and
// normalizing twice changes nothing.
inline void check_normalize(std::string_view path) {
  static std::string out, again;
  for (bool merge : {true, false}) {
    NormalizeOptions options;
    options.merge_slashes = merge;
    if (!normalize_path(path, options, out)) continue;
    FUZZ_CHECK(!out.empty() && out[0] == '/');
    FUZZ_CHECK(out.size() <= path.size());
    FUZZ_CHECK(out.find("/./") == std::string::npos);
    FUZZ_CHECK(out.find("/../") == std::string::npos);
    FUZZ_CHECK(!(out.size() >= 2 && out.compare(out.size() - 2, 2, "/.") == 0));
    FUZZ_CHECK(!(out.size() >= 3 && out.compare(out.size() - 3, 3, "/..") == 0));
    FUZZ_CHECK(out.find('\0') == std::string::npos);
    if (merge) FUZZ_CHECK(out.find("//") == std::string::npos);
    FUZZ_CHECK(normalize_path(out, options, again));
    FUZZ_CHECK(again == out);
  }
}

inline void check_target(std::string_view target) {
  TargetParts parts;
  static std::string host;
  switch (split_target(target, parts)) {
    case TargetForm::origin:
      FUZZ_CHECK(!parts.path.empty() && parts.path[0] == '/');
      check_normalize(parts.path);
      break;
    case TargetForm::absolute:
      FUZZ_CHECK(!parts.scheme.empty());
      FUZZ_CHECK(parse_authority(parts.authority, host));
      FUZZ_CHECK(!parts.path.empty() && parts.path[0] == '/');
      check_normalize(parts.path);
      break;
    case TargetForm::authority:
      FUZZ_CHECK(parse_authority(parts.authority, host));
      break;
    case TargetForm::asterisk:
      FUZZ_CHECK(target == "*");
      break;
    case TargetForm::invalid:
      break;
  }
}

}  // namespace turnpike::http::fuzz
