// Request-target handling (RFC 9112 §3.2, RFC 3986): splitting the four target forms,
// validating authorities, and normalizing paths so that the router and the origin agree on them.
//
// Hot path: split_target and split_authority never allocate; normalize_path and parse_authority
// write into a caller-owned string that keeps its capacity.
#include "turnpike/http/uri.h"

#include "char_class.h"
#include "turnpike/common/strings.h"

namespace turnpike::http {

using detail::has_class;

namespace {

// ---------------------------------------------------------------------------------------------
// Authorities
// ---------------------------------------------------------------------------------------------

constexpr size_t kMaxHostLength = 255;

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// RFC 3986 §3.2.2 IPv4address: four dec-octets, no leading zeros ("01" would be octal to some).
bool is_ipv4(std::string_view s) noexcept {
  int octets = 0;
  size_t i = 0;
  while (true) {
    const size_t start = i;
    int value = 0;
    while (i < s.size() && is_digit(s[i]) && i - start < 3) value = value * 10 + (s[i++] - '0');
    const size_t digits = i - start;
    if (digits == 0 || value > 255 || (digits > 1 && s[start] == '0')) return false;
    if (++octets == 4) return i == s.size();
    if (i == s.size() || s[i] != '.') return false;
    ++i;
  }
}

// RFC 3986 §3.2.2 IPv6address: up to eight h16 pieces separated by ':', at most one "::" standing
// for one or more zero pieces, optionally ending in an IPv4address (worth two pieces).
bool is_ipv6(std::string_view s) noexcept {
  const size_t n = s.size();
  if (n < 2) return false;
  size_t pieces = 0;
  bool elided = false;
  size_t i = 0;
  if (s[0] == ':') {
    if (s[1] != ':') return false;
    elided = true;
    i = 2;
    if (i == n) return true;  // "::"
  }
  while (true) {
    const size_t start = i;
    while (i < n && has_class(s[i], detail::kHexDigit) && i - start < 5) ++i;
    if (i < n && s[i] == '.') {  // the trailing IPv4 part
      if (!is_ipv4(s.substr(start))) return false;
      pieces += 2;
      break;
    }
    if (i == start || i - start > 4) return false;
    ++pieces;
    if (i == n) break;
    if (s[i] != ':') return false;
    ++i;
    if (i < n && s[i] == ':') {
      if (elided) return false;
      elided = true;
      ++i;
      if (i == n) break;
    } else if (i == n) {
      return false;  // a trailing single ':'
    }
  }
  return elided ? pieces <= 7 : pieces == 8;
}

bool is_reg_name(std::string_view s) noexcept {
  if (s.empty() || s.size() > kMaxHostLength) return false;
  for (char c : s) {
    if (!has_class(c, detail::kUnreserved)) return false;
  }
  return true;
}

// RFC 3986 §3.2.3 port = *DIGIT, narrowed to 1-5 digits that fit in 16 bits.
bool is_port(std::string_view s) noexcept {
  if (s.empty() || s.size() > 5) return false;
  const auto v = parse_decimal(s);
  return v && *v <= 65535;
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

constexpr char kUpperHex[] = "0123456789ABCDEF";

// Removes the last segment of `out`, which ends with '/'; the root is never removed
// (RFC 3986 §5.2.4 step 2C, where "/.." at the root leaves "/").
void pop_segment(std::string& out) noexcept {
  if (out.size() <= 1) return;
  out.pop_back();
  out.resize(out.rfind('/') + 1);
}

bool starts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

bool split_authority(std::string_view authority, std::string_view& host,
                     std::string_view& port) noexcept {
  if (authority.empty()) return false;
  size_t host_end = 0;
  if (authority[0] == '[') {
    // RFC 3986 §3.2.2 IP-literal; IPvFuture ("[v1.x]") and zone ids are refused.
    const size_t close = authority.find(']');
    if (close == std::string_view::npos || !is_ipv6(authority.substr(1, close - 1))) return false;
    host_end = close + 1;
  } else {
    host_end = authority.find(':');
    if (host_end == std::string_view::npos) host_end = authority.size();
    // '@' is not unreserved, so userinfo (RFC 9110 §4.2.4) fails here too.
    if (!is_reg_name(authority.substr(0, host_end))) return false;
  }
  host = authority.substr(0, host_end);
  port = {};
  if (host_end == authority.size()) return true;
  if (authority[host_end] != ':') return false;
  port = authority.substr(host_end + 1);
  return is_port(port);
}

bool parse_authority(std::string_view authority, std::string& host_out) {
  std::string_view host, port;
  if (!split_authority(authority, host, port)) return false;
  host_out.assign(host);
  for (char& c : host_out) c = ascii_lower(c);
  return true;
}

std::string_view to_string(TargetForm f) noexcept {
  switch (f) {
    case TargetForm::origin: return "origin";
    case TargetForm::absolute: return "absolute";
    case TargetForm::authority: return "authority";
    case TargetForm::asterisk: return "asterisk";
    case TargetForm::invalid: return "invalid";
  }
  return "invalid";
}

TargetForm split_target(std::string_view target, TargetParts& out) noexcept {
  out = TargetParts{};
  // RFC 9112 §3.2: no form of request-target carries a fragment.
  if (target.empty() || target.find('#') != std::string_view::npos) return TargetForm::invalid;
  if (target == "*") {  // RFC 9112 §3.2.4
    out.path = target;
    return TargetForm::asterisk;
  }

  auto split_query = [&out](std::string_view path_and_query) {
    const size_t q = path_and_query.find('?');
    out.path = path_and_query.substr(0, q);
    if (q != std::string_view::npos) {
      out.query = path_and_query.substr(q + 1);
      out.has_query = true;
    }
  };
  if (target[0] == '/') {  // RFC 9112 §3.2.1 origin-form
    split_query(target);
    return TargetForm::origin;
  }

  // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
  size_t i = 0;
  auto is_alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (is_alpha(target[0])) {
    while (i < target.size() &&
           (is_alpha(target[i]) || is_digit(target[i]) || target[i] == '+' || target[i] == '-' ||
            target[i] == '.')) {
      ++i;
    }
  }
  if (i > 0 && target.substr(i, 3) == "://") {  // RFC 9112 §3.2.2 absolute-form
    out.scheme = target.substr(0, i);
    std::string_view rest = target.substr(i + 3);
    const size_t authority_end = rest.find_first_of("/?");
    out.authority = rest.substr(0, authority_end);
    std::string_view host, port;
    if (!split_authority(out.authority, host, port)) {
      out = TargetParts{};
      return TargetForm::invalid;
    }
    rest.remove_prefix(out.authority.size());
    if (rest.empty() || rest[0] == '?') {
      // RFC 9112 §3.2.1: an empty path is sent as "/".
      out.path = "/";
      if (!rest.empty()) {
        out.query = rest.substr(1);
        out.has_query = true;
      }
    } else {
      split_query(rest);
    }
    return TargetForm::absolute;
  }

  // RFC 9112 §3.2.3 authority-form: uri-host ":" port, nothing else.
  std::string_view host, port;
  if (split_authority(target, host, port) && !port.empty()) {
    out.authority = target;
    return TargetForm::authority;
  }
  return TargetForm::invalid;
}

bool normalize_path(std::string_view path, const NormalizeOptions& options, std::string& out) {
  out.clear();
  if (path.empty() || path[0] != '/') return false;
  out.reserve(path.size());
  out.push_back('/');
  // Invariant: before each segment is appended, `out` ends with '/'.
  size_t i = 1;
  while (true) {
    const size_t segment_start = out.size();
    size_t j = i;
    for (; j < path.size() && path[j] != '/'; ++j) {
      const char c = path[j];
      if (c == '%') {
        if (j + 2 >= path.size()) return false;  // truncated escape
        const int hi = detail::hex_value(path[j + 1]);
        const int lo = detail::hex_value(path[j + 2]);
        if (hi < 0 || lo < 0) return false;
        const char decoded = static_cast<char>(hi * 16 + lo);
        if (decoded == '\0') return false;  // an encoded NUL truncates paths in C origins
        if (has_class(decoded, detail::kUnreserved)) {
          out.push_back(decoded);  // RFC 3986 §6.2.2.2 (this is how "%2E%2E" becomes "..")
        } else {
          // RFC 3986 §6.2.2.1: keep the escape, upper-case hex. "%2F" stays a data byte.
          out.push_back('%');
          out.push_back(kUpperHex[hi]);
          out.push_back(kUpperHex[lo]);
        }
        j += 2;
      } else if (has_class(c, detail::kPcharRaw)) {
        out.push_back(c);
      } else {
        return false;  // RFC 3986 §3.3: not a pchar
      }
    }
    const bool last = j >= path.size();
    const std::string_view segment(out.data() + segment_start, out.size() - segment_start);
    if (segment == ".") {  // RFC 3986 §5.2.4 steps 2A-2B, 2D
      out.resize(segment_start);
    } else if (segment == "..") {  // steps 2A, 2C-2D
      out.resize(segment_start);
      pop_segment(out);
    } else if (starts_with(segment, ".;") || starts_with(segment, "..;")) {
      // Servlet containers read "..;x" as ".." with a path parameter: refuse the ambiguity.
      return false;
    } else if (!last && !(segment.empty() && options.merge_slashes)) {
      out.push_back('/');
    }
    if (last) return true;
    i = j + 1;
  }
}

}  // namespace turnpike::http
