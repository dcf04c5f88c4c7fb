// RouteRule path and host syntax: validate_path, validate_host and the parsers Router::build
// uses. Config input is untrusted, so every rejection says which rule of the syntax was broken.
#include "route_syntax.h"

#include <algorithm>

#include "turnpike/common/strings.h"

namespace turnpike::router {

std::string_view to_string(PathKind k) noexcept {
  switch (k) {
    case PathKind::exact: return "exact";
    case PathKind::prefix: return "prefix";
    case PathKind::pattern: return "pattern";
  }
  return "unknown";
}

std::string_view to_string(HeaderCondition::Op op) noexcept {
  switch (op) {
    case HeaderCondition::Op::equals: return "equals";
    case HeaderCondition::Op::prefix: return "prefix";
    case HeaderCondition::Op::present: return "present";
    case HeaderCondition::Op::absent: return "absent";
  }
  return "unknown";
}

bool validate_path(std::string_view path, std::string& error) {
  detail::ParsedPath parsed;
  return detail::parse_path(path, parsed, error);
}

bool validate_host(std::string_view host, std::string& error) {
  detail::ParsedHost parsed;
  return detail::parse_host(host, parsed, error);
}

namespace detail {
namespace {

bool fail(std::string& error, std::string_view what, std::string_view subject,
          std::string_view reason) {
  error.clear();
  error.append(what).append(" \"").append(subject).append("\": ").append(reason);
  return false;
}

constexpr bool is_name_start(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
constexpr bool is_name_char(char c) noexcept { return is_name_start(c) || (c >= '0' && c <= '9'); }

bool is_param_name(std::string_view name) noexcept {
  return !name.empty() && is_name_start(name.front()) &&
         std::all_of(name.begin() + 1, name.end(), is_name_char);
}

constexpr bool is_host_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

}  // namespace

bool parse_path(std::string_view path, ParsedPath& out, std::string& error) {
  out = ParsedPath{};
  if (path.empty()) return fail(error, "path", path, "is empty");
  if (path.front() != '/') return fail(error, "path", path, "must start with '/'");
  for (char c : path) {
    // Request paths arrive without query or fragment, so a rule containing one never matches.
    if (c == '?' || c == '#') return fail(error, "path", path, "must not contain '?' or '#'");
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return fail(error, "path", path, "must not contain spaces or control characters");
    }
  }
  if (path == "/") return true;

  // Walk the segments between '/'s. Every segment must be non-empty: only "/" itself ends in '/'.
  std::string_view rest = path.substr(1);
  while (true) {
    size_t slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    bool last = slash == std::string_view::npos;
    if (segment.empty()) {
      return fail(error, "path", path, "has an empty segment (\"//\" or a trailing '/')");
    }
    if (segment == "*") {
      if (!last) return fail(error, "path", path, "'*' is only allowed as the final segment \"/*\"");
      out.ends_with_star = true;
      break;
    }
    if (segment.find('*') != std::string_view::npos) {
      return fail(error, "path", path, "'*' must be a whole segment, and only the final one");
    }
    // Normalized request paths have no dot segments (RFC 3986 §5.2.4), so such a rule is dead.
    if (segment == "." || segment == "..") {
      return fail(error, "path", path, "must not contain \".\" or \"..\" segments");
    }
    bool has_brace = segment.find_first_of("{}") != std::string_view::npos;
    if (has_brace) {
      if (segment.size() < 2 || segment.front() != '{' || segment.back() != '}') {
        return fail(error, "path", path, "a {param} must be a whole segment");
      }
      std::string_view name = segment.substr(1, segment.size() - 2);
      if (!is_param_name(name)) {
        return fail(error, "path", path,
                    "parameter names must match [A-Za-z_][A-Za-z0-9_]*");
      }
      for (const PathSegment& seen : out.segments) {
        if (seen.is_param && seen.text == name) {
          return fail(error, "path", path, "parameter names must be unique");
        }
      }
      out.segments.push_back({name, true});
      size_t params = std::count_if(out.segments.begin(), out.segments.end(),
                                    [](const PathSegment& s) { return s.is_param; });
      if (params > kMaxPathParams) {
        return fail(error, "path", path,
                    "has more than " + std::to_string(kMaxPathParams) + " parameters");
      }
    } else {
      out.segments.push_back({segment, false});
    }
    if (last) break;
    rest = rest.substr(slash + 1);
  }

  bool has_params = std::any_of(out.segments.begin(), out.segments.end(),
                                [](const PathSegment& s) { return s.is_param; });
  out.kind = has_params ? PathKind::pattern : out.ends_with_star ? PathKind::prefix : PathKind::exact;
  return true;
}

bool parse_host(std::string_view host, ParsedHost& out, std::string& error) {
  out = ParsedHost{};
  if (host.empty()) return fail(error, "host", host, "is empty (leave hosts empty to match any host)");
  std::string_view name = host;
  if (name.starts_with("*.")) {
    out.is_wildcard = true;
    name.remove_prefix(2);
    if (name.empty()) return fail(error, "host", host, "a wildcard needs a suffix after \"*.\"");
  }
  size_t colon = name.find(':');
  if (colon != std::string_view::npos && name.find(':', colon + 1) == std::string_view::npos &&
      parse_decimal(name.substr(colon + 1))) {
    return fail(error, "host", host, "must not contain a port");
  }
  if (name.find('*') != std::string_view::npos) {
    return fail(error, "host", host, "'*' is only allowed as a leading \"*.\" label");
  }
  // RFC 1035 §2.3.4: at most 253 characters in a name, 63 in a label.
  if (name.size() > 253) return fail(error, "host", host, "is longer than 253 characters");
  size_t label_size = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c >= 'A' && c <= 'Z') return fail(error, "host", host, "must be lower-case");
    if (!is_host_char(c)) {
      return fail(error, "host", host, "may only contain a-z, 0-9, '-' and '.'");
    }
    if (c == '.') {
      if (label_size == 0) return fail(error, "host", host, "has an empty label");
      label_size = 0;
    } else if (++label_size > 63) {
      return fail(error, "host", host, "has a label longer than 63 characters");
    }
  }
  if (label_size == 0) return fail(error, "host", host, "has an empty label");
  out.name = name;
  return true;
}

}  // namespace detail
}  // namespace turnpike::router
