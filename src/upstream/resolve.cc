// Resolving upstream nodes when a snapshot is built (never on the data path).
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

namespace {

// Adds node `i`'s tags to the upstream's tag sets.
void index_tags(ResolvedUpstream& out, const std::vector<std::string>& tags, size_t i) {
  if (i >= 64) return;  // the config refuses tagged upstreams of more than 64 nodes
  const uint64_t bit = uint64_t{1} << i;
  if (!tags.empty()) out.untagged_nodes &= ~bit;
  for (const std::string& tag : tags) {
    auto it = std::find_if(out.tagged_nodes.begin(), out.tagged_nodes.end(),
                           [&](const auto& entry) { return entry.first == tag; });
    if (it == out.tagged_nodes.end()) it = out.tagged_nodes.insert(it, {tag, 0});
    it->second |= bit;
  }
}

}  // namespace

bool resolve_upstream(const config::UpstreamConfig& cfg, ResolvedUpstream& out,
                      std::vector<config::ConfigError>& errors, std::string_view local_zone) {
  out.config = &cfg;
  out.nodes.clear();
  out.tagged_nodes.clear();
  out.untagged_nodes = ~uint64_t{0};
  bool ok = true;
  std::vector<std::string_view> zones;  // per resolved node
  if (cfg.tls.enabled) {
    out.tls = tls::ClientContext::build(cfg, errors);
    if (!out.tls) ok = false;
  }
  for (const auto& node : cfg.nodes) {
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(node.host, ec);
    if (ec) {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* res = nullptr;
      int rc = ::getaddrinfo(node.host.c_str(), nullptr, &hints, &res);
      if (rc != 0 || res == nullptr) {
        errors.push_back({node.source.file, node.source.line,
                          "upstream \"" + cfg.name + "\": cannot resolve host \"" + node.host +
                              "\": " + ::gai_strerror(rc)});
        ok = false;
        continue;
      }
      if (res->ai_family == AF_INET6) {
        asio::ip::address_v6::bytes_type b;
        std::memcpy(b.data(), &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr, 16);
        ip = asio::ip::address_v6(b);
      } else {
        ip = asio::ip::address_v4(ntohl(reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr.s_addr));
      }
      ::freeaddrinfo(res);
    }
    ResolvedNode rn;
    rn.endpoint = tcp::endpoint(ip, node.port);
    rn.weight = node.weight == 0 ? 1 : node.weight;
    rn.address = ip.is_v6() ? "[" + ip.to_string() + "]:" + std::to_string(node.port)
                            : ip.to_string() + ":" + std::to_string(node.port);
    out.nodes.push_back(std::move(rn));
    zones.push_back(node.zone);
    index_tags(out, node.tags, out.nodes.size() - 1);
  }
  index_balancing(cfg, out, zones, local_zone);
  // Only real nodes are untagged: with every node tagged, the set must be empty, not the bits
  // past the last node (pick would choose among nodes that do not exist).
  if (out.nodes.size() < 64) out.untagged_nodes &= (uint64_t{1} << out.nodes.size()) - 1;
  if (ok) {
    // The nodes' health: kept from the running snapshot for the addresses that stay.
    std::vector<std::string> addresses;
    addresses.reserve(out.nodes.size());
    for (const ResolvedNode& n : out.nodes) addresses.push_back(n.address);
    out.health = health_registry().attach(cfg, addresses);
  }
  return ok;
}

uint64_t ResolvedUpstream::nodes_with_tag(std::string_view tag) const {
  for (const auto& [name, set] : tagged_nodes) {
    if (name == tag) return set;
  }
  return 0;
}

}  // namespace turnpike::upstream
