// Internal: parsing of the path and host syntax of a RouteRule (see router.h), shared by the
// public validate_path/validate_host and by Router::build. Build-time only; never on the hot path.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "turnpike/router/router.h"

namespace turnpike::router::detail {

struct PathSegment {
  std::string_view text;  // the literal, or the parameter's name for a {param} segment
  bool is_param = false;
};

struct ParsedPath {
  PathKind kind = PathKind::exact;
  std::vector<PathSegment> segments;  // "/" has none; a trailing "/*" is not a segment
  bool ends_with_star = false;        // the rule matches everything below its segments too
};

// Parses `path` into segments that view into it; on invalid syntax returns false and says why.
bool parse_path(std::string_view path, ParsedPath& out, std::string& error);

struct ParsedHost {
  bool is_wildcard = false;  // "*.suffix"
  std::string_view name;     // the exact host, or the suffix after "*." for a wildcard
};

// Parses `host`; `out.name` views into it. On invalid syntax returns false and says why.
bool parse_host(std::string_view host, ParsedHost& out, std::string& error);

}  // namespace turnpike::router::detail
