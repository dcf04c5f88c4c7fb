// Addresses in a config: listener IP literals, upstream node hosts and the "host:port" short form.
#include <arpa/inet.h>

#include "sections.h"
#include "turnpike/common/strings.h"

namespace turnpike::config::detail {

namespace {

// The family (AF_INET, AF_INET6) of the IP literal `s`, its bytes in `buf`; 0 when `s` is none.
int parse_ip(std::string_view s, unsigned char (&buf)[16]) {
  char text[INET6_ADDRSTRLEN];
  if (s.size() >= sizeof text) return 0;  // (longer than any literal)
  s.copy(text, s.size());
  text[s.size()] = '\0';
  if (inet_pton(AF_INET, text, buf) == 1) return AF_INET;
  if (inet_pton(AF_INET6, text, buf) == 1) return AF_INET6;
  return 0;
}

}  // namespace

std::string canonical_ip(std::string_view s) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  const int family = parse_ip(s, buf);
  return family != 0 && inet_ntop(family, buf, out, sizeof out) ? out : "";
}

std::string_view strip_brackets(std::string_view s) {
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') return s.substr(1, s.size() - 2);
  return s;
}

namespace {

// RFC 1123 §2.1 host names: labels of letters, digits and hyphens (and '_', which real DNS
// data contains), not starting or ending with a hyphen; the last label is not all digits, so
// a malformed IPv4 literal ("256.1.1.1") is not taken for a name.
bool valid_dns_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  if (s.back() == '.') s.remove_suffix(1);
  bool last_all_digits = false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t dot = s.find('.', start);
    if (dot == std::string_view::npos) dot = s.size();
    std::string_view label = s.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    last_all_digits = true;
    for (char c : label) {
      bool digit = c >= '0' && c <= '9';
      bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      if (!digit && !alpha && c != '-' && c != '_') return false;
      if (!digit) last_all_digits = false;
    }
    start = dot + 1;
  }
  return !last_all_digits;
}

}  // namespace

bool valid_upstream_host(std::string_view host) {
  // (Parsed, not formatted: canonical_ip's inet_ntop is a sprintf per node of a large upstream.)
  unsigned char buf[16];
  return parse_ip(host, buf) != 0 || valid_dns_name(host);
}

bool valid_tag(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '_' || c == '-';
  });
}

std::string node_host_error(const UpstreamNodeConfig& node) {
  if (node.srv) {
    // SRV owner names start with "_service._proto" labels (RFC 2782): underscores allowed.
    std::string name = node.host;
    std::replace(name.begin(), name.end(), '_', 'x');
    if (!valid_upstream_host(name) || !canonical_ip(name).empty()) {
      return "service " + quote(node.host) + " is not a DNS name (as \"_http._tcp.app.example\")";
    }
    return {};
  }
  if (!valid_upstream_host(node.host)) return "host " + quote(node.host) + " is neither an IP address nor a DNS name";
  return {};
}

std::string node_identity(const UpstreamNodeConfig& node) {
  if (node.srv) return "srv " + node.host;
  std::string id = node.host;
  id += ':';
  id += std::to_string(node.port);
  return id;
}

// Short node form: "10.0.0.1:8080", "[::1]:8080", "backend.local:80" or a host alone (port 80).
bool parse_host_port(std::string_view s, std::string& host, std::optional<int64_t>& port,
                     std::string& why) {
  std::string_view port_text;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) {
      why = "has \"[\" without \"]\"";
      return false;
    }
    host = std::string(s.substr(1, close - 1));
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        why = "expected \":port\" after \"]\"";
        return false;
      }
      port_text = rest.substr(1);
      if (port_text.empty()) {
        why = "has an empty port";
        return false;
      }
    }
  } else {
    size_t colon = s.rfind(':');
    if (colon != std::string_view::npos && s.find(':') != colon) {
      why = "IPv6 addresses need brackets: \"[::1]:8080\"";
      return false;
    }
    host = std::string(s.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = s.substr(colon + 1);
      if (port_text.empty()) {
        why = "has an empty port";
        return false;
      }
    }
  }
  if (!port_text.empty()) {
    std::optional<uint64_t> p = parse_decimal(port_text);
    if (!p || *p < 1 || *p > 65535) {
      why = "port " + quote(port_text) + " is not in 1..65535";
      return false;
    }
    port = static_cast<int64_t>(*p);
  }
  return true;
}

}  // namespace turnpike::config::detail
