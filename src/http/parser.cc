// Strict HTTP/1.1 request and response head parsers (RFC 9112): the start lines, and the framing
// decisions drawn from the fields (head_fields.cc finds the head and splits its fields).
//
// Hot path: no allocation (beyond `headers` growing before warm-up), no exceptions.
#include "turnpike/http/parser.h"

#include <cstring>

#include "char_class.h"
#include "head_internal.h"
#include "turnpike/common/strings.h"
#include "turnpike/http/uri.h"

namespace turnpike::http {

using detail::FieldSummary;

std::string_view to_string(ParseError e) noexcept {
  switch (e) {
    case ParseError::none: return "none";
    case ParseError::bad_request_line: return "bad_request_line";
    case ParseError::bad_method: return "bad_method";
    case ParseError::bad_target: return "bad_target";
    case ParseError::bad_version: return "bad_version";
    case ParseError::uri_too_long: return "uri_too_long";
    case ParseError::header_section_too_large: return "header_section_too_large";
    case ParseError::too_many_headers: return "too_many_headers";
    case ParseError::bad_header_name: return "bad_header_name";
    case ParseError::bad_header_value: return "bad_header_value";
    case ParseError::space_before_colon: return "space_before_colon";
    case ParseError::obs_fold: return "obs_fold";
    case ParseError::bare_cr: return "bare_cr";
    case ParseError::bare_lf: return "bare_lf";
    case ParseError::missing_host: return "missing_host";
    case ParseError::duplicate_host: return "duplicate_host";
    case ParseError::bad_host: return "bad_host";
    case ParseError::bad_content_length: return "bad_content_length";
    case ParseError::conflicting_content_length: return "conflicting_content_length";
    case ParseError::conflicting_framing: return "conflicting_framing";
    case ParseError::bad_transfer_encoding: return "bad_transfer_encoding";
    case ParseError::te_in_http10: return "te_in_http10";
    case ParseError::bad_status_line: return "bad_status_line";
    case ParseError::bad_status_code: return "bad_status_code";
  }
  return "unknown";
}

int status_for(ParseError e) noexcept {
  switch (e) {
    case ParseError::uri_too_long: return 414;
    case ParseError::header_section_too_large:
    case ParseError::too_many_headers: return 431;
    default: return 400;
  }
}

bool is_hop_by_hop(std::string_view name) noexcept {
  switch (name.size()) {
    case 2: return iequals(name, "te");
    case 7: return iequals(name, "upgrade") || iequals(name, "trailer");
    case 10: return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16: return iequals(name, "proxy-connection");
    case 17: return iequals(name, "transfer-encoding");
    default: return false;
  }
}

namespace {

// ---------------------------------------------------------------------------------------------
// Start lines
// ---------------------------------------------------------------------------------------------

// "HTTP/1.0" → 0, "HTTP/1.1" → 1, another "HTTP/<digits and dots>" → -1 (a version we do not
// speak), anything else → -2 (not a version at all).
int parse_version(std::string_view v) noexcept {
  if (v == "HTTP/1.1") return 1;
  if (v == "HTTP/1.0") return 0;
  if (v.size() <= 5 || v.substr(0, 5) != "HTTP/") return -2;
  for (char c : v.substr(5)) {
    if ((c < '0' || c > '9') && c != '.') return -2;
  }
  return -1;
}

// A line that failed on byte `c`: a CR there is always reported as bare_cr.
ParseError blame(char c, ParseError otherwise) noexcept {
  return c == '\r' ? ParseError::bare_cr : otherwise;
}

// RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces only.
ParseError parse_request_line(std::string_view line, RequestHead& out) noexcept {
  const size_t n = line.size();
  size_t i = 0;
  while (i < n && detail::is_tchar(line[i])) ++i;
  if (i == n) return ParseError::bad_request_line;  // no SP: HTTP/0.9 or garbage
  if (line[i] != ' ') {
    if (line[i] == '\t') return ParseError::bad_request_line;
    return blame(line[i], ParseError::bad_method);
  }
  if (i == 0) return ParseError::bad_request_line;
  out.method_name = line.substr(0, i);
  out.method = parse_method(out.method_name);

  const size_t target_start = ++i;
  while (i < n && detail::has_class(line[i], detail::kTargetByte)) ++i;
  if (i == n) return ParseError::bad_request_line;  // no version
  if (line[i] != ' ') return blame(line[i], ParseError::bad_target);
  if (i == target_start) return ParseError::bad_request_line;  // two spaces
  out.target = line.substr(target_start, i - target_start);

  const std::string_view version = line.substr(i + 1);
  const int minor = parse_version(version);
  if (minor >= 0) {
    out.version_minor = static_cast<uint8_t>(minor);
    return ParseError::none;
  }
  if (const size_t cr = version.find('\r'); cr != std::string_view::npos) return ParseError::bare_cr;
  return minor == -1 ? ParseError::bad_version : ParseError::bad_request_line;
}

// RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]. A missing SP
// after the code is tolerated only when the line ends there, as many origins send "HTTP/1.1 200".
ParseError parse_status_line(std::string_view line, ResponseHead& out) noexcept {
  const size_t sp = line.find(' ');
  const int minor = parse_version(line.substr(0, sp));
  if (minor < 0) {
    if (line.find('\r') != std::string_view::npos) return ParseError::bare_cr;
    return minor == -1 ? ParseError::bad_version : ParseError::bad_status_line;
  }
  out.version_minor = static_cast<uint8_t>(minor);
  if (sp == std::string_view::npos || sp + 1 == line.size() || line[sp + 1] == ' ') {
    return ParseError::bad_status_line;
  }
  std::string_view rest = line.substr(sp + 1);
  if (rest.size() < 3) return ParseError::bad_status_code;
  int status = 0;
  for (size_t i = 0; i < 3; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return blame(rest[i], ParseError::bad_status_code);
    status = status * 10 + (rest[i] - '0');
  }
  if (rest.size() > 3 && rest[3] != ' ') return blame(rest[3], ParseError::bad_status_code);
  // RFC 9110 §15: status codes are 100..599.
  if (status < 100 || status > 599) return ParseError::bad_status_code;
  out.status = status;
  out.reason = rest.size() > 3 ? rest.substr(4) : std::string_view();
  // RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).
  for (char c : out.reason) {
    if (!detail::has_class(c, detail::kFieldByte)) return blame(c, ParseError::bad_status_line);
  }
  return ParseError::none;
}

// The offset of the LF ending the start line that begins at `start` (found by find_head_end).
size_t start_line_lf(const char* data, size_t start, size_t head_end) noexcept {
  const void* lf = std::memchr(data + start, '\n', head_end - start);
  return static_cast<size_t>(static_cast<const char*>(lf) - data);
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

ParseError request_framing(const FieldSummary& s, RequestHead& out) noexcept {
  if (s.has_transfer_encoding) {
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    if (out.version_minor == 0) return ParseError::te_in_http10;
    // RFC 9112 §6.3: TE with CL is a smuggling vector; a server MAY reject it, and we do.
    if (s.has_content_length) return ParseError::conflicting_framing;
    // RFC 9112 §6.3 rule 4: a request whose final coding is not chunked has no reliable length.
    // We decode no other coding, so chunked must be the one and only coding.
    if (s.other_coding || s.chunked_count != 1) return ParseError::bad_transfer_encoding;
    out.framing = BodyFraming::chunked;
  } else if (s.has_content_length) {
    out.framing = BodyFraming::content_length;
    out.content_length = s.content_length;
  } else {
    out.framing = BodyFraming::none;  // RFC 9112 §6.3 rule 7
  }
  return ParseError::none;
}

bool response_has_no_body(Method request_method, int status) noexcept {
  // RFC 9112 §6.3 rule 1; rule 2: after a 2xx to CONNECT the connection is a tunnel.
  return request_method == Method::head || status < 200 || status == 204 || status == 304 ||
         (request_method == Method::connect && status < 300);
}

ParseError response_framing(const FieldSummary& s, Method request_method,
                            ResponseHead& out) noexcept {
  if (s.has_content_length) out.content_length = s.content_length;
  if (s.has_transfer_encoding) {
    if (out.version_minor == 0) return ParseError::te_in_http10;  // RFC 9112 §6.1
    // RFC 9112 §6.3 rule 3: TE overrides CL, but the pair suggests smuggling; refuse it (502).
    if (s.has_content_length) return ParseError::conflicting_framing;
    // RFC 9112 §6.1: chunked must not be applied more than once.
    if (s.chunked_count > 1) return ParseError::bad_transfer_encoding;
  }
  if (response_has_no_body(request_method, out.status)) {
    out.framing = BodyFraming::none;
  } else if (s.has_transfer_encoding) {
    // RFC 9112 §6.3 rule 4: chunked final → chunked; otherwise the body runs until close.
    out.framing = s.chunked_final ? BodyFraming::chunked : BodyFraming::until_close;
  } else if (s.has_content_length) {
    out.framing = BodyFraming::content_length;  // rule 6
  } else {
    out.framing = BodyFraming::until_close;  // rule 8
  }
  return ParseError::none;
}

// RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive".
bool keep_alive(const FieldSummary& s, uint8_t version_minor) noexcept {
  if (s.connection_close) return false;
  return version_minor == 1 || s.connection_keep_alive;
}

ParseStatus fail(ParseError e, ParseError& err) noexcept {
  err = e;
  return ParseStatus::error;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

ParseStatus parse_request_head(const char* data, size_t len, const ParserLimits& limits,
                               ParseState& state, RequestHead& out, std::vector<Header>& headers,
                               ParseError& err) noexcept {
  err = ParseError::none;
  size_t head_end = 0;
  const ParseStatus found = detail::find_head_end(data, len, limits, /*is_request=*/true,
                                                  ParseError::uri_too_long, state, head_end, err);
  if (found != ParseStatus::complete) return found;

  out = RequestHead{};
  headers.clear();
  const size_t lf = start_line_lf(data, state.head_start, head_end);
  ParseError e = parse_request_line(
      std::string_view(data + state.head_start, lf - 1 - state.head_start), out);
  if (e != ParseError::none) return fail(e, err);

  FieldSummary s;
  e = detail::parse_field_lines(data, lf + 1, head_end - 2, headers, s);
  if (e != ParseError::none) return fail(e, err);

  // RFC 9112 §3.2: a 1.1 request has exactly one Host; more than one is refused even when they
  // agree, as different hops may pick different ones.
  if (s.host_count > 1) return fail(ParseError::duplicate_host, err);
  if (s.host_count == 0 && out.version_minor == 1) return fail(ParseError::missing_host, err);
  if (!s.host.empty()) {
    std::string_view host_part, port;
    if (!split_authority(s.host, host_part, port)) return fail(ParseError::bad_host, err);
  }
  out.host = s.host;

  e = request_framing(s, out);
  if (e != ParseError::none) return fail(e, err);
  out.keep_alive = keep_alive(s, out.version_minor);
  out.upgrade = s.connection_upgrade && s.has_upgrade;
  // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored.
  out.expect_continue = s.expect_continue && out.version_minor == 1;
  out.unknown_expectation = s.unknown_expectation;
  out.head_length = head_end;
  return ParseStatus::complete;
}

ParseStatus parse_response_head(const char* data, size_t len, const ParserLimits& limits,
                                ParseState& state, Method request_method, ResponseHead& out,
                                std::vector<Header>& headers, ParseError& err) noexcept {
  err = ParseError::none;
  size_t head_end = 0;
  const ParseStatus found =
      detail::find_head_end(data, len, limits, /*is_request=*/false,
                            ParseError::header_section_too_large, state, head_end, err);
  if (found != ParseStatus::complete) return found;

  out = ResponseHead{};
  headers.clear();
  if (head_end - state.head_start == 2) return fail(ParseError::bad_status_line, err);  // empty
  const size_t lf = start_line_lf(data, state.head_start, head_end);
  ParseError e = parse_status_line(
      std::string_view(data + state.head_start, lf - 1 - state.head_start), out);
  if (e != ParseError::none) return fail(e, err);

  FieldSummary s;
  e = detail::parse_field_lines(data, lf + 1, head_end - 2, headers, s);
  if (e != ParseError::none) return fail(e, err);
  e = response_framing(s, request_method, out);
  if (e != ParseError::none) return fail(e, err);
  // A body delimited by the close cannot be followed by another response on this connection.
  out.keep_alive = keep_alive(s, out.version_minor) && out.framing != BodyFraming::until_close;
  out.head_length = head_end;
  return ParseStatus::complete;
}

}  // namespace turnpike::http
