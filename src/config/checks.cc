// Warnings: checks on a config that loaded without errors but likely does not do what was meant.
// They never stop a start or a reload; `turnpike -t` and the start and reload logs show them.
//
//   - a route that can never match, because an earlier route with the same conditions (or a
//     later one with a higher priority) always wins;
//   - a route that forwards requests arriving on a listener to an upstream whose node is that
//     listener itself, so a request can loop through the proxy until something gives out.
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "sections.h"

namespace turnpike::config::detail {

namespace {

ConfigError warning(const SourceRef& at, std::string message) {
  return ConfigError{at.file, at.line, std::move(message), true};
}

// ---------------------------------------------------------------------------------------------
// Routes that can never match
// ---------------------------------------------------------------------------------------------

// What decides whether a route matches a request, in a form where equal means "matches exactly
// the same requests". Lists are sets, so their order does not count; no listeners means all.
struct MatchConditions {
  std::vector<std::string> listeners;
  std::vector<std::string> hosts;
  std::vector<std::string> paths;
  uint32_t method_mask = 0;
  std::vector<std::tuple<std::string, int, std::string>> headers;
  bool operator==(const MatchConditions&) const = default;
};

MatchConditions conditions_of(const RouteConfig& r, const Config& cfg) {
  MatchConditions c;
  c.listeners = r.listeners;
  if (c.listeners.empty()) {
    for (const ListenerConfig& l : cfg.listeners) c.listeners.push_back(l.name);
  }
  c.hosts = r.rule.hosts;
  c.paths = r.rule.paths;
  c.method_mask = r.rule.method_mask;
  for (const auto& h : r.rule.headers) c.headers.emplace_back(h.name, static_cast<int>(h.op), h.value);
  std::sort(c.listeners.begin(), c.listeners.end());
  std::sort(c.hosts.begin(), c.hosts.end());
  std::sort(c.paths.begin(), c.paths.end());
  std::sort(c.headers.begin(), c.headers.end());
  return c;
}

// Between two routes with the same conditions the router picks the higher priority, and at equal
// priority the one listed first (router.h), so the other one is certain never to match. Routes
// that only overlap are left alone: only certain shadowing is reported.
void find_shadowed_routes(const Config& cfg, std::vector<ConfigError>& out) {
  std::vector<MatchConditions> conds;
  conds.reserve(cfg.routes.size());
  for (const RouteConfig& r : cfg.routes) conds.push_back(conditions_of(r, cfg));
  std::vector<bool> reported(cfg.routes.size(), false);
  for (size_t i = 0; i < cfg.routes.size(); ++i) {
    for (size_t j = i + 1; j < cfg.routes.size(); ++j) {
      if (!(conds[i] == conds[j])) continue;
      const RouteConfig& first = cfg.routes[i];
      const RouteConfig& later = cfg.routes[j];
      const bool later_wins = later.rule.priority > first.rule.priority;
      const size_t loser = later_wins ? i : j;
      if (reported[loser]) continue;
      reported[loser] = true;
      const RouteConfig& lost = later_wins ? first : later;
      const RouteConfig& won = later_wins ? later : first;
      out.push_back(warning(
          lost.source, item_name("route", lost.name) + " can never match: " + item_name("route", won.name) +
                           " at line " + std::to_string(won.source.line) +
                           " has the same listeners and match conditions and " +
                           (later_wins ? "a higher priority" : "comes first with the same or a higher priority")));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Proxy loops
// ---------------------------------------------------------------------------------------------

// Addresses of this host: loopback ranges always, and every interface address. The interfaces
// are asked (a netlink dump, ~0.7 ms: a twentieth of reloading a 2,000-node upstream) the first
// time an address that is not loopback is looked up, which most configs never do.
class LocalAddresses {
 public:
  // `ip` is canonical (canonical_ip()).
  bool contains(const std::string& ip) const {
    if (ip.starts_with("127.") || ip == "::1") return true;
    if (!addresses_) addresses_ = interface_addresses();
    return std::find(addresses_->begin(), addresses_->end(), ip) != addresses_->end();
  }

 private:
  static std::vector<std::string> interface_addresses() {
    std::vector<std::string> out;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) return out;
    for (ifaddrs* a = list; a; a = a->ifa_next) {
      if (!a->ifa_addr) continue;
      char text[INET6_ADDRSTRLEN];
      const void* raw = nullptr;
      if (a->ifa_addr->sa_family == AF_INET) raw = &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr;
      if (a->ifa_addr->sa_family == AF_INET6) raw = &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr;
      if (raw && ::inet_ntop(a->ifa_addr->sa_family, raw, text, sizeof text)) out.emplace_back(text);
    }
    ::freeifaddrs(list);
    return out;
  }

  mutable std::optional<std::vector<std::string>> addresses_;
};

// The addresses a node's host names without asking DNS: an IP literal, or "localhost".
std::vector<std::string> literal_addresses(const std::string& host) {
  if (std::string ip = canonical_ip(host); !ip.empty()) return {ip};
  if (host == "localhost" || host == "localhost.") return {"127.0.0.1", "::1"};
  return {};
}

bool is_v4(const std::string& ip) { return ip.find(':') == std::string::npos; }

// Whether a connection to `ip` reaches a socket bound to `listen_ip`. "0.0.0.0" takes every
// local IPv4 address; "::" every local address, IPv4 included, since listeners are dual-stack.
bool reaches(const std::string& ip, const std::string& listen_ip, const LocalAddresses& local) {
  if (ip == listen_ip) return true;
  if (listen_ip == "0.0.0.0") return is_v4(ip) && local.contains(ip);
  if (listen_ip == "::") return local.contains(ip);
  return false;
}

// The first node of `u` that is the listener `l` itself, or null.
const UpstreamNodeConfig* node_at_listener(const UpstreamConfig& u, const ListenerConfig& l,
                                           const LocalAddresses& local) {
  const std::string listen_ip = canonical_ip(l.address);
  for (const UpstreamNodeConfig& n : u.nodes) {
    if (n.port != l.port) continue;
    for (const std::string& ip : literal_addresses(n.host)) {
      if (reaches(ip, listen_ip, local)) return &n;
    }
  }
  return nullptr;
}

bool serves(const RouteConfig& r, const ListenerConfig& l) {
  return r.listeners.empty() || std::find(r.listeners.begin(), r.listeners.end(), l.name) != r.listeners.end();
}

void find_loops(const Config& cfg, std::vector<ConfigError>& out) {
  const LocalAddresses local;
  for (const ListenerConfig& l : cfg.listeners) {
    if (l.port == 0) continue;  // the port is not known before the start
    for (const RouteConfig& r : cfg.routes) {
      if (r.respond || !serves(r, l)) continue;
      const UpstreamConfig* u = cfg.find_upstream(r.upstream);
      const UpstreamNodeConfig* node = u ? node_at_listener(*u, l, local) : nullptr;
      if (!node) continue;
      out.push_back(warning(
          r.source, item_name("route", r.name) + " forwards requests arriving on " + item_name("listener", l.name) +
                        " (line " + std::to_string(l.source.line) + ") to " + item_name("upstream", u->name) +
                        ", whose node " + node->host + ":" + std::to_string(node->port) + " (line " +
                        std::to_string(node->source.line) + ") is that listener: a request can loop; " +
                        (r.listeners.empty() ? "list the route's listeners with \"listeners:\""
                                             : "remove that listener from the route's \"listeners\"")));
    }
  }
}

}  // namespace

std::vector<ConfigError> find_warnings(const Config& cfg) {
  std::vector<ConfigError> out;
  find_shadowed_routes(cfg, out);
  find_loops(cfg, out);
  std::stable_sort(out.begin(), out.end(), [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  return out;
}

}  // namespace turnpike::config::detail
