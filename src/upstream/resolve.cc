// Expanding upstream nodes into addresses when a snapshot is built (never on the data path).
#include <algorithm>
#include <charconv>
#include <unordered_set>

#include "turnpike/upstream/discovery.h"
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

// A name's addresses: the table's last good answer; a name the table has never seen (a snapshot
// built without lookup_config_names: tests, tools) is looked up now with the system resolver.
std::optional<DnsAnswer> answer_for(const config::UpstreamNodeConfig& node) {
  const std::string key = dns_key(node);
  std::optional<NameTable::Entry> e = name_table().get(key);
  if (!e) {
    std::vector<DnsQuery> q{DnsQuery::of(node)};
    dns_lookup(config::ResolverConfig{}, q);
    name_table().record(key, q.front());
    e = name_table().get(key);
  }
  return e ? e->good : std::nullopt;
}

// "10.0.0.1:80", "[::1]:80": a node's address as the health table and the logs name it.
std::string node_address(const asio::ip::address& ip, uint16_t port) {
  if (ip.is_v6()) {
    std::string out = "[";
    out += ip.to_string();
    out += "]:";
    out += std::to_string(port);
    return out;
  }
  // (IPv4 by hand: inet_ntop formats it with sprintf, a tenth of resolving a 2,000-node upstream.)
  char text[sizeof "255.255.255.255:65535"];
  char* p = text;
  char* const end = text + sizeof text;
  const asio::ip::address_v4::bytes_type b = ip.to_v4().to_bytes();
  for (size_t i = 0; i < b.size(); ++i) {
    p = std::to_chars(p, end - 1, unsigned{b[i]}).ptr;  // (end - 1: room for the separator)
    *p++ = i + 1 < b.size() ? '.' : ':';
  }
  p = std::to_chars(p, end, unsigned{port}).ptr;
  return std::string(text, p);
}

}  // namespace

bool resolve_upstream(const config::UpstreamConfig& cfg, ResolvedUpstream& out,
                      std::vector<config::ConfigError>& errors, std::string_view local_zone,
                      const ResolvedUpstream* previous) {
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
  std::unordered_set<std::string> seen;  // addresses: two names with the same address make one node
  seen.reserve(cfg.nodes.size());
  out.nodes.reserve(cfg.nodes.size());
  zones.reserve(cfg.nodes.size());
  auto add = [&](const config::UpstreamNodeConfig& node, const asio::ip::address& ip, uint16_t port,
                 uint32_t weight, const std::string& host) {
    std::string address = node_address(ip, port);
    if (!seen.insert(address).second) return;
    ResolvedNode rn;
    rn.endpoint = tcp::endpoint(ip, port);
    rn.weight = weight == 0 ? 1 : weight;
    rn.address = std::move(address);
    rn.host = host;
    out.nodes.push_back(std::move(rn));
    zones.push_back(node.zone);
    index_tags(out, node.tags, out.nodes.size() - 1);
  };
  for (const auto& node : cfg.nodes) {
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(node.host, ec);
    if (!ec && !node.srv) {
      add(node, ip, node.port, node.weight, node.host);
      continue;
    }
    const std::optional<DnsAnswer> answer = answer_for(node);
    if (!answer) {
      auto e = name_table().get(dns_key(node));
      errors.push_back({node.source.file, node.source.line,
                        "upstream \"" + cfg.name + "\": cannot resolve " + (node.srv ? "service" : "host") + " \"" +
                            node.host + "\": " + (e ? e->error : std::string("no answer"))});
      ok = false;
      continue;
    }
    for (const DnsTarget& t : answer->targets) {
      if (node.srv) {
        // SRV weights are 0..65535 with 0 "rarely"; ours 1..10000 (RFC 2782 §"Weight").
        add(node, t.address, t.port, std::clamp<uint32_t>(t.weight, 1, 10'000), t.host);
      } else {
        add(node, t.address, node.port, node.weight, node.host);
      }
    }
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
    out.health = health_registry().attach(cfg, addresses, previous ? previous->health.get() : nullptr);
  }
  return ok;
}

bool same_nodes(const ResolvedUpstream& a, const ResolvedUpstream& b) {
  if (a.nodes.size() != b.nodes.size()) return false;
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    if (a.nodes[i].address != b.nodes[i].address || a.nodes[i].weight != b.nodes[i].weight ||
        a.nodes[i].host != b.nodes[i].host) {
      return false;
    }
  }
  return true;
}

uint64_t ResolvedUpstream::nodes_with_tag(std::string_view tag) const {
  for (const auto& [name, set] : tagged_nodes) {
    if (name == tag) return set;
  }
  return 0;
}

}  // namespace turnpike::upstream
