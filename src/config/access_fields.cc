// log.access_fields: an nginx-style variable list ("$remote_addr [$time_iso8601] \"$request\"
// $status") parsed once, at load, into the AccessField ops the access log runs per line. An
// unknown variable is an error at its line, so a typo never reaches the running gateway.
#include <algorithm>
#include <array>
#include <utility>

#include "sections.h"

namespace turnpike::config {

namespace {

constexpr std::array<std::pair<std::string_view, AccessVar>, 25> kVariables = {{
    {"remote_addr", AccessVar::remote_addr},
    {"remote_port", AccessVar::remote_port},
    {"time_iso8601", AccessVar::time_iso8601},
    {"msec", AccessVar::msec},
    {"request_id", AccessVar::request_id},
    {"host", AccessVar::host},
    {"request", AccessVar::request},
    {"request_method", AccessVar::request_method},
    {"request_uri", AccessVar::request_uri},
    {"server_protocol", AccessVar::server_protocol},
    {"scheme", AccessVar::scheme},
    {"status", AccessVar::status},
    {"body_bytes_sent", AccessVar::body_bytes_sent},
    {"request_body_bytes", AccessVar::request_body_bytes},
    {"request_time", AccessVar::request_time},
    {"route", AccessVar::route},
    {"consumer", AccessVar::consumer},
    {"error", AccessVar::error},
    {"upstream_addr", AccessVar::upstream_addr},
    {"upstream_status", AccessVar::upstream_status},
    {"upstream_connect_time", AccessVar::upstream_connect_time},
    {"upstream_header_time", AccessVar::upstream_header_time},
    {"upstream_response_time", AccessVar::upstream_response_time},
    {"ssl_protocol", AccessVar::ssl_protocol},
    {"ssl_cipher", AccessVar::ssl_cipher},
}};

constexpr std::string_view kHttpPrefix = "http_";

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t'; });
}

// The op for variable `name` (without '$'), or false with `why`.
bool variable(std::string_view name, AccessField& out, std::string& why) {
  out.key = std::string(name);
  for (const auto& [known, var] : kVariables) {
    if (name == known) {
      out.var = var;
      return true;
    }
  }
  if (name.starts_with(kHttpPrefix) && name.size() > kHttpPrefix.size()) {
    // nginx's rule: $http_user_agent is the User-Agent field (lower case, '_' for '-').
    out.var = AccessVar::http_header;
    out.text.clear();
    for (char c : name.substr(kHttpPrefix.size())) {
      out.text.push_back(c == '_' ? '-' : static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    }
    return true;
  }
  why = "unknown variable $" + std::string(name) + " (docs/configuration.md, \"Access log fields\", lists them)";
  return false;
}

}  // namespace

std::string_view to_string(AccessVar v) noexcept {
  if (v == AccessVar::literal) return "literal";
  if (v == AccessVar::http_header) return "http_<name>";
  for (const auto& [name, var] : kVariables) {
    if (var == v) return name;
  }
  return "?";
}

namespace detail {

bool parse_access_fields(std::string_view spec, bool json, std::vector<AccessField>& out, std::string& why) {
  out.clear();
  std::string literal;
  auto flush_literal = [&]() -> bool {
    if (literal.empty()) return true;
    if (json && !blank(literal)) {
      why = "text between variables (" + quote(literal) +
            ") has no place in a JSON line, whose keys are the variables' names";
      return false;
    }
    if (!json) out.push_back({AccessVar::literal, literal, {}});
    literal.clear();
    return true;
  };
  size_t i = 0;
  while (i < spec.size()) {
    if (spec[i] != '$') {
      literal.push_back(spec[i++]);
      continue;
    }
    // $name, or ${name} when letters follow the variable directly.
    std::string_view name;
    if (i + 1 < spec.size() && spec[i + 1] == '{') {
      const size_t close = spec.find('}', i + 2);
      if (close == std::string_view::npos) {
        why = "\"${\" without its \"}\"";
        return false;
      }
      name = spec.substr(i + 2, close - i - 2);
      if (name.empty() || !std::all_of(name.begin(), name.end(), name_char)) {
        why = "${" + std::string(name) + "} is not a variable name (letters, digits and '_')";
        return false;
      }
      i = close + 1;
    } else {
      size_t end = i + 1;
      while (end < spec.size() && name_char(spec[end])) ++end;
      name = spec.substr(i + 1, end - i - 1);
      if (name.empty()) {
        why = "a '$' must start a variable ($status, ${status})";
        return false;
      }
      i = end;
    }
    if (!flush_literal()) return false;
    AccessField f;
    if (!variable(name, f, why)) return false;
    if (json && std::any_of(out.begin(), out.end(), [&](const AccessField& o) { return o.key == f.key; })) {
      why = "$" + f.key + " twice: a JSON line would have the key twice";
      return false;
    }
    out.push_back(std::move(f));
  }
  if (!flush_literal()) return false;
  if (std::none_of(out.begin(), out.end(), [](const AccessField& f) { return f.var != AccessVar::literal; })) {
    why = "names no variable ($remote_addr, $status, ...)";
    return false;
  }
  return true;
}

}  // namespace detail

}  // namespace turnpike::config
