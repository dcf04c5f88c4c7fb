// Loading node discovery's keys: the top-level `resolver:` section (DNS servers, re-resolution
// interval, TTL bounds, address family) and an upstream's `resolve_interval`. Kept apart from
// loader.cc so the upstream section there only names the keys.
#include "sections.h"

namespace turnpike::config {

std::string_view to_string(AddressFamily f) noexcept {
  switch (f) {
    case AddressFamily::any: return "any";
    case AddressFamily::ipv4: return "ipv4";
    case AddressFamily::ipv6: return "ipv6";
    case AddressFamily::prefer_ipv4: return "prefer_ipv4";
    case AddressFamily::prefer_ipv6: return "prefer_ipv6";
  }
  return "unknown";
}

namespace detail {

namespace {

constexpr Duration kZero{0};
constexpr Duration kPositive{1};

// A DNS server: "10.0.0.2", "10.0.0.2:5353", "::1" or "[::1]:5353".
bool valid_server(std::string_view s) {
  if (!canonical_ip(s).empty()) return true;  // an address alone (an IPv6 one without brackets too)
  std::string host;
  std::optional<int64_t> port;
  std::string why;
  return parse_host_port(s, host, port, why) && !canonical_ip(host).empty();
}

void load_servers(const Where& w, const YAML::Node& n, ResolverConfig& r) {
  auto list = read_string_list(w, n);
  if (!list) return;
  for (auto& [text, node] : *list) {
    if (!valid_server(text)) {
      w.error(node, quote(text) + " is not a DNS server: expected an IP address and an optional port, as "
                                  "\"10.0.0.2\", \"127.0.0.1:5353\" or \"[::1]:53\"");
      continue;
    }
    r.servers.push_back(std::move(text));
  }
}

void load_family(const Where& w, const YAML::Node& n, AddressFamily& out) {
  auto s = read_string(w, n);
  if (!s) return;
  for (auto f : {AddressFamily::any, AddressFamily::ipv4, AddressFamily::ipv6, AddressFamily::prefer_ipv4,
                 AddressFamily::prefer_ipv6}) {
    if (*s == to_string(f)) {
      out = f;
      return;
    }
  }
  w.error(n, quote(*s) + " is not an address family: use any, ipv4, ipv6, prefer_ipv4 or prefer_ipv6");
}

}  // namespace

void load_resolver(Diagnostics& diag, const YAML::Node& n, ResolverConfig& r) {
  Where w(diag, "", "resolver");
  r.source = w.source(n);
  // `resolver: [10.0.0.2, 10.0.0.3:5353]`: the servers alone, as nginx's directive names them.
  if (n.IsSequence()) {
    load_servers(w, n, r);
    return;
  }
  if (!expect_map(w, n)) return;
  check_keys(w, n, {"servers", "interval", "respect_ttl", "min_ttl", "max_ttl", "timeout", "family"});
  if (const YAML::Node s = n["servers"]) load_servers(w.key("servers"), s, r);
  field_duration(w, n, "interval", r.interval, kZero);
  field(w, n, "respect_ttl", r.respect_ttl);
  field_duration(w, n, "min_ttl", r.min_ttl, kPositive);
  field_duration(w, n, "max_ttl", r.max_ttl, kPositive);
  field_duration(w, n, "timeout", r.timeout, kPositive);
  if (const YAML::Node f = n["family"]) load_family(w.key("family"), f, r.family);
  if (r.max_ttl < r.min_ttl) w.key("max_ttl").error(n["max_ttl"] ? n["max_ttl"] : n, "must not be below min_ttl");
}

void load_resolve_interval(const Where& uw, const YAML::Node& item, UpstreamConfig& u) {
  const YAML::Node n = item["resolve_interval"];
  if (!n) return;
  if (auto d = read_duration(uw.key("resolve_interval"), n, kZero)) u.resolve_interval = *d;
}

}  // namespace detail
}  // namespace turnpike::config
