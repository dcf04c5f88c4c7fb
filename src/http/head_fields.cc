// The shared half of the head parsers: finding where a head ends, and splitting and interpreting
// its field lines (RFC 9112 §2, §5, §6; RFC 9110 §5, §7.6.1, §8.6, §10.1.1).
//
// Hot path: no allocation (beyond `headers` growing before warm-up), no exceptions.
#include <cstdint>
#include <cstring>

#include "char_class.h"
#include "head_internal.h"
#include "turnpike/common/strings.h"

namespace turnpike::http::detail {

// ---------------------------------------------------------------------------------------------
// Finding the end of the head
// ---------------------------------------------------------------------------------------------

ParseStatus find_head_end(const char* data, size_t len, const ParserLimits& limits,
                          bool is_request, ParseError start_line_too_long, ParseState& st,
                          size_t& head_end, ParseError& err) noexcept {
  // The head must end within max_header_bytes, so nothing past that is ever searched.
  const size_t scan_end = len < limits.max_header_bytes ? len : limits.max_header_bytes;
  size_t pos = st.scanned;
  while (pos < scan_end) {
    const void* hit = std::memchr(data + pos, '\n', scan_end - pos);
    if (hit == nullptr) {
      pos = scan_end;
      break;
    }
    const size_t lf = static_cast<size_t>(static_cast<const char*>(hit) - data);
    const bool on_start_line = st.line_start == st.head_start;
    // Checked before the line ending so that the error does not depend on how the input was
    // split: fed byte by byte, this line would have failed before its LF arrived.
    if (on_start_line && lf - st.head_start >= limits.max_request_line) {
      err = start_line_too_long;
      return ParseStatus::error;
    }
    // RFC 9112 §2.2: a recipient MAY accept a bare LF as a line terminator; we do not, because
    // a lenient and a strict parser disagreeing on line ends is how requests get smuggled.
    if (lf == 0 || data[lf - 1] != '\r') {
      err = ParseError::bare_lf;
      return ParseStatus::error;
    }
    const size_t next = lf + 1;
    if (next - st.line_start == 2) {  // an empty line
      if (on_start_line && is_request) {
        // RFC 9112 §2.2: a server SHOULD ignore empty lines received before the request-line.
        st.head_start = st.line_start = next;
        pos = next;
        continue;
      }
      st.scanned = lf;  // a repeated call finds this same end again
      head_end = next;
      return ParseStatus::complete;
    }
    if (!on_start_line && ++st.fields > limits.max_headers) {
      err = ParseError::too_many_headers;
      return ParseStatus::error;
    }
    st.line_start = next;
    pos = next;
  }
  st.scanned = pos;
  if (st.line_start == st.head_start && scan_end - st.head_start >= limits.max_request_line) {
    err = start_line_too_long;
    return ParseStatus::error;
  }
  if (len >= limits.max_header_bytes) {
    err = ParseError::header_section_too_large;
    return ParseStatus::error;
  }
  return ParseStatus::incomplete;
}

// ---------------------------------------------------------------------------------------------
// Field lines
// ---------------------------------------------------------------------------------------------

namespace {

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

// The offset of the first byte in p[0, n) that is not a field-value byte, or n. Values are most
// of a head's bytes, so they are checked eight at a time: a word with no byte below 0x20 and none
// equal to 0x7F is valid as a whole (obs-text, 0x80 and up, is allowed). A word that fails the
// test (it may just hold an HTAB) is rechecked byte by byte.
size_t find_bad_value_byte(const char* p, size_t n) noexcept {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kHighs = 0x8080808080808080ull;
  size_t i = 0;
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    const uint64_t below_space = (w - kOnes * 0x20) & ~w & kHighs;  // some byte < 0x20
    const uint64_t x = w ^ (kOnes * 0x7f);
    const uint64_t del = (x - kOnes) & ~x & kHighs;  // some byte == 0x7F
    if ((below_space | del) == 0) {
      i += 8;
      continue;
    }
    for (const size_t end = i + 8; i < end; ++i) {
      if (!has_class(p[i], kFieldByte)) return i;
    }
  }
  for (; i < n; ++i) {
    if (!has_class(p[i], kFieldByte)) return i;
  }
  return n;
}

// RFC 9112 §5.1: field-line = field-name ":" OWS field-value OWS. Parses the line starting at
// data[pos] (find_head_end has checked that every line of the head ends in CRLF, so the scans
// stop at its CR without a bound) and sets `next` to the start of the following line. The line's
// end is found by the value check itself, not by a separate search for the LF.
ParseError parse_field_line(const char* data, size_t pos, size_t end, Header& h, size_t& next) noexcept {
  // RFC 9112 §5.2: obs-fold is rejected; so is whitespace before the first field (§2.2).
  if (is_ows(data[pos])) return ParseError::obs_fold;
  size_t i = pos;
  while (is_tchar(data[i])) ++i;
  if (data[i] != ':') {
    if (data[i] == '\r') return data[i + 1] == '\n' ? ParseError::bad_header_name : ParseError::bare_cr;  // no colon
    if (is_ows(data[i])) {
      // RFC 9112 §5.1: no whitespace is allowed between the field name and colon.
      size_t j = i;
      while (is_ows(data[j])) ++j;
      if (data[j] == ':') return ParseError::space_before_colon;
    }
    return ParseError::bad_header_name;
  }
  if (i == pos) return ParseError::bad_header_name;
  h.name = std::string_view(data + pos, i - pos);
  // RFC 9110 §5.5: field-value bytes are VCHAR, obs-text, SP and HTAB; NUL, CR, LF and the other
  // CTLs are rejected rather than replaced. The first byte that is not one must be the line's CR.
  const size_t value = i + 1;
  const size_t stop = value + find_bad_value_byte(data + value, end - value);
  if (data[stop] != '\r') return ParseError::bad_header_value;
  if (data[stop + 1] != '\n') return ParseError::bare_cr;
  h.value = trim_ows(std::string_view(data + value, stop - value));
  next = stop + 2;
  return ParseError::none;
}

// Whether a token (tchar bytes only) equals a field name given in lower case (letters and '-'),
// ignoring case, eight bytes at a time. OR-ing 0x20 into each byte folds A-Z onto a-z; among
// tchar bytes no other one lands on a lower-case letter, and none lands on '-' (only CR would).
bool token_is(std::string_view token, std::string_view lower) noexcept {
  if (token.size() != lower.size()) return false;
  constexpr uint64_t kFold = 0x2020202020202020ull;
  size_t i = 0;
  for (; i + 8 <= token.size(); i += 8) {
    uint64_t a, b;
    std::memcpy(&a, token.data() + i, 8);
    std::memcpy(&b, lower.data() + i, 8);
    if ((a | kFold) != b) return false;
  }
  for (; i < token.size(); ++i) {
    if ((token[i] | 0x20) != lower[i]) return false;
  }
  return true;
}

// Calls f(element) for each comma-separated list element, OWS-trimmed (RFC 9110 §5.6.1). Empty
// elements are passed on too: whether they are harmless depends on the field. Stops when f
// returns false and returns false then.
template <class F>
bool for_each_element(std::string_view value, F&& f) noexcept {
  while (true) {
    const size_t comma = value.find(',');
    if (!f(trim_ows(value.substr(0, comma)))) return false;
    if (comma == std::string_view::npos) return true;
    value.remove_prefix(comma + 1);
  }
}

// RFC 9112 §7: transfer-coding = token *( OWS ";" OWS transfer-parameter ), with
// transfer-parameter = token BWS "=" BWS token. Quoted-string parameter values are refused: no
// coding we accept takes parameters, and a quoted comma would split the list differently in
// another parser. Returns false when malformed; `name` is the coding name.
bool parse_transfer_coding(std::string_view element, std::string_view& name,
                           bool& has_params) noexcept {
  size_t i = 0;
  while (i < element.size() && is_tchar(element[i])) ++i;
  if (i == 0) return false;
  name = element.substr(0, i);
  has_params = false;
  auto skip_ows = [&] {
    while (i < element.size() && is_ows(element[i])) ++i;
  };
  auto token = [&] {
    const size_t start = i;
    while (i < element.size() && is_tchar(element[i])) ++i;
    return i > start;
  };
  while (i < element.size()) {
    skip_ows();
    if (i == element.size() || element[i] != ';') return false;
    ++i;
    skip_ows();
    if (!token()) return false;
    skip_ows();
    if (i == element.size() || element[i] != '=') return false;
    ++i;
    skip_ows();
    if (!token()) return false;
    has_params = true;
  }
  return true;
}

ParseError note_content_length(std::string_view value, FieldSummary& s) noexcept {
  // RFC 9110 §8.6: a list of identical values (or repeated fields with the same value) may be
  // taken as that one value; anything else is unrecoverable framing.
  ParseError result = ParseError::none;
  for_each_element(value, [&](std::string_view element) {
    const auto n = parse_decimal(element);
    if (!n) {
      result = ParseError::bad_content_length;
      return false;
    }
    if (s.has_content_length && *n != s.content_length) {
      result = ParseError::conflicting_content_length;
      return false;
    }
    s.has_content_length = true;
    s.content_length = *n;
    return true;
  });
  return result;
}

ParseError note_transfer_encoding(std::string_view value, FieldSummary& s) noexcept {
  s.has_transfer_encoding = true;
  ParseError result = ParseError::none;
  for_each_element(value, [&](std::string_view element) {
    std::string_view name;
    bool has_params = false;
    // An empty element is refused although RFC 9110 §5.6.1 would skip it: "chunked, " is read
    // as ending in chunked by some parsers and as ending in an empty coding by others.
    if (!parse_transfer_coding(element, name, has_params)) {
      result = ParseError::bad_transfer_encoding;
      return false;
    }
    if (iequals(name, "chunked")) {
      if (has_params) {  // RFC 9112 §7.1 defines no parameters for chunked
        result = ParseError::bad_transfer_encoding;
        return false;
      }
      ++s.chunked_count;
      s.chunked_final = true;
    } else {
      s.other_coding = true;
      s.chunked_final = false;
    }
    return true;
  });
  return result;
}

void note_connection(std::string_view value, FieldSummary& s) noexcept {
  // RFC 9110 §7.6.1: connection options are case-insensitive tokens. Other options name
  // hop-by-hop fields; the caller removes those.
  for_each_element(value, [&](std::string_view option) {
    if (iequals(option, "close")) s.connection_close = true;
    else if (iequals(option, "keep-alive")) s.connection_keep_alive = true;
    else if (iequals(option, "upgrade")) s.connection_upgrade = true;
    return true;
  });
}

void note_expect(std::string_view value, FieldSummary& s) noexcept {
  // RFC 9110 §10.1.1: 100-continue is the only expectation defined; any other → 417.
  for_each_element(value, [&](std::string_view expectation) {
    if (expectation.empty()) return true;
    if (iequals(expectation, "100-continue")) s.expect_continue = true;
    else s.unknown_expectation = true;
    return true;
  });
}

// Folds one field into the summary if it is one of the fields that govern framing.
ParseError note_field(const Header& h, FieldSummary& s) noexcept {
  switch (h.name.size()) {
    case 4:
      if (token_is(h.name, "host")) {
        ++s.host_count;
        s.host = h.value;
      }
      break;
    case 6:
      if (token_is(h.name, "expect")) note_expect(h.value, s);
      break;
    case 7:
      if (token_is(h.name, "upgrade")) s.has_upgrade = true;
      break;
    case 10:
      if (token_is(h.name, "connection")) note_connection(h.value, s);
      break;
    case 14:
      if (token_is(h.name, "content-length")) return note_content_length(h.value, s);
      break;
    case 17:
      if (token_is(h.name, "transfer-encoding")) return note_transfer_encoding(h.value, s);
      break;
    default:
      break;
  }
  return ParseError::none;
}

}  // namespace

ParseError parse_field_lines(const char* data, size_t begin, size_t end,
                             std::vector<Header>& headers, FieldSummary& summary) noexcept {
  size_t pos = begin;
  while (pos < end) {
    Header h;
    size_t next = pos;
    const ParseError e = parse_field_line(data, pos, end, h, next);
    if (e != ParseError::none) return e;
    headers.push_back(h);
    if (const ParseError n = note_field(h, summary); n != ParseError::none) return n;
    pos = next;
  }
  return ParseError::none;
}

}  // namespace turnpike::http::detail
