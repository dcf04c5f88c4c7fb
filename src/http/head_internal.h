// Pieces shared by the request and response head parsers (parser.cc): finding the end of the
// head, and splitting and interpreting its field lines (head_fields.cc). Internal to tp_http.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "turnpike/http/parser.h"

namespace turnpike::http::detail {

// Searches data[state.scanned, len) for the empty line that ends the head, checking every line
// ending on the way (bare LF) and the limits, which are enforced on incomplete input too. Requests
// skip empty lines before the start line (RFC 9112 §2.2). On `complete`, head_end is the offset
// just past the final CRLF and state.head_start the offset of the start line. A start line longer
// than limits.max_request_line fails with `start_line_too_long`.
ParseStatus find_head_end(const char* data, size_t len, const ParserLimits& limits,
                          bool is_request, ParseError start_line_too_long, ParseState& state,
                          size_t& head_end, ParseError& err) noexcept;

// What the fields that govern framing and connection handling said, across all their lines.
struct FieldSummary {
  size_t host_count = 0;
  std::string_view host;            // the (last) Host value
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool has_transfer_encoding = false;
  size_t chunked_count = 0;         // how many times "chunked" was listed
  bool chunked_final = false;       // the last listed coding is chunked
  bool other_coding = false;        // a coding other than chunked was listed
  bool connection_close = false;
  bool connection_keep_alive = false;
  bool connection_upgrade = false;
  bool has_upgrade = false;         // an Upgrade field is present
  bool expect_continue = false;
  bool unknown_expectation = false;
};

// Parses the field lines in data[begin, end), each ending in CRLF (already checked by
// find_head_end), appending them to `headers` and folding the framing fields into `summary`.
ParseError parse_field_lines(const char* data, size_t begin, size_t end,
                             std::vector<Header>& headers, FieldSummary& summary) noexcept;

}  // namespace turnpike::http::detail
