// Node discovery: the table of every name's last answer, the lookups a snapshot build makes, and
// the discovery thread that looks names up again and reports the upstreams whose nodes changed.
#include "turnpike/upstream/discovery.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <utility>

namespace turnpike::upstream {

namespace {

constexpr std::string_view kSrvPrefix = "srv://";

// For a host the config has validated (an IP literal or a DNS name): only IPv6 literals have a
// ':', and a name's last label is never all digits, so digits and dots alone are an IPv4 literal.
// (Parsing every node's address here was a fifth of swapping in a 2,000-node file's update.)
bool is_ip_literal(std::string_view host) {
  if (host.find(':') != std::string_view::npos) return true;
  return !host.empty() &&
         std::all_of(host.begin(), host.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

std::string describe(const DnsAnswer& a) {
  std::string out;
  for (const DnsTarget& t : a.targets) {
    if (!out.empty()) out += ' ';
    out += t.address.to_string();
    if (t.port) {
      out += ':';
      out += std::to_string(t.port);
    }
  }
  return out;
}

}  // namespace

std::string dns_key(const config::UpstreamNodeConfig& node) {
  return node.srv ? std::string(kSrvPrefix) + node.host : node.host;
}

// ---- the table ----------------------------------------------------------------------------------

std::optional<NameTable::Entry> NameTable::get(const std::string& key) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

bool NameTable::record(const std::string& key, const DnsQuery& q) {
  DiscoveryStats& stats = discovery_stats();
  std::lock_guard lock(mutex_);
  Entry& e = entries_[key];
  if (!q.ok) {
    stats.lookups_failed.fetch_add(1, std::memory_order_relaxed);
    // Told once per failing streak: a resolver that is down would otherwise write a line per
    // interval per name.
    if (e.error.empty()) {
      if (e.good) {
        spdlog::warn("DNS lookup of {} failed ({}): keeping its last addresses ({})", key, q.error, describe(*e.good));
      } else {
        spdlog::warn("DNS lookup of {} failed ({})", key, q.error);
      }
    }
    e.error = q.error;
    return false;
  }
  stats.lookups_ok.fetch_add(1, std::memory_order_relaxed);
  if (!e.error.empty() && e.good) spdlog::info("DNS lookup of {} succeeds again", key);
  e.error.clear();
  const bool changed = !e.good || !e.good->same_targets(q.answer);
  e.good = q.answer;
  return changed;
}

NameTable& name_table() {
  static NameTable table;
  return table;
}

DiscoveryStats& discovery_stats() {
  static DiscoveryStats stats;
  return stats;
}

namespace {

// The names among `nodes` not in `seen` yet, as queries (IP literals need none).
void add_queries(const std::vector<config::UpstreamNodeConfig>& nodes, std::set<std::string>& seen,
                 std::vector<DnsQuery>& queries) {
  for (const auto& node : nodes) {
    if (!node.srv && is_ip_literal(node.host)) continue;
    if (!seen.insert(dns_key(node)).second) continue;
    queries.push_back(DnsQuery::of(node));
  }
}

void look_up(const config::ResolverConfig& resolver, std::vector<DnsQuery>& queries) {
  if (queries.empty()) return;
  dns_lookup(resolver, queries);
  for (const DnsQuery& q : queries) name_table().record(q.srv ? std::string(kSrvPrefix) + q.name : q.name, q);
}

}  // namespace

void lookup_config_names(const config::Config& config) {
  std::vector<DnsQuery> queries;
  std::set<std::string> seen;
  for (const auto& up : config.upstreams) add_queries(up.nodes, seen, queries);
  look_up(config.resolver, queries);
}

void lookup_new_names(const config::ResolverConfig& resolver, const std::vector<config::UpstreamNodeConfig>& nodes) {
  std::vector<DnsQuery> queries;
  std::set<std::string> seen;
  add_queries(nodes, seen, queries);
  std::erase_if(queries, [](const DnsQuery& q) {
    return name_table().get(q.srv ? std::string(kSrvPrefix) + q.name : q.name).has_value();
  });
  look_up(resolver, queries);
}

// ---- the discovery thread ------------------------------------------------------------------------

NodeDiscovery::~NodeDiscovery() { stop(); }

void NodeDiscovery::start(OnChange on_change) {
  on_change_ = std::move(on_change);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "tp-discovery");  // (bench/discovery.sh reads its CPU by name)
    run();
  });
}

void NodeDiscovery::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NodeDiscovery::update(std::shared_ptr<const config::Config> config,
                           std::vector<std::shared_ptr<const config::UpstreamConfig>> upstreams,
                           bool all_looked_up) {
  std::vector<Watch> next;
  for (const auto& up : upstreams) {
    Watch w{up.get(), {}, {}};
    std::set<std::string> seen;
    for (const auto& node : up->nodes) {
      if (!node.srv && is_ip_literal(node.host)) continue;
      if (seen.insert(dns_key(node)).second) w.names.push_back(DnsQuery::of(node));
    }
    if (!w.names.empty()) next.push_back(std::move(w));
  }
  {
    std::lock_guard lock(mutex_);
    config_ = std::move(config);
    // (The old watches point into the old configs: kept until they are compared below.)
    const std::vector<std::shared_ptr<const config::UpstreamConfig>> old_upstreams =
        std::exchange(upstreams_, std::move(upstreams));
    const auto now = Clock::now();
    auto same_names = [](const Watch& a, const Watch& b) {
      return a.upstream->name == b.upstream->name &&
             std::equal(a.names.begin(), a.names.end(), b.names.begin(), b.names.end(),
                        [](const DnsQuery& x, const DnsQuery& y) { return x.name == y.name && x.srv == y.srv; });
    };
    for (Watch& w : next) {
      w.due = now + interval(w);
      if (all_looked_up) continue;
      auto old = std::find_if(watches_.begin(), watches_.end(), [&](const Watch& o) { return same_names(o, w); });
      if (old != watches_.end()) w.due = old->due;
    }
    watches_ = std::move(next);
    ++version_;
  }
  wake_.notify_all();
}

NodeDiscovery::Clock::duration NodeDiscovery::interval(const Watch& w) const {
  const config::ResolverConfig& r = config_->resolver;
  if (w.upstream->resolve_interval) return *w.upstream->resolve_interval;
  if (!r.respect_ttl) return r.interval;
  // The smallest TTL among the upstream's names, as last answered.
  uint32_t ttl = UINT32_MAX;
  for (const DnsQuery& q : w.names) {
    auto e = name_table().get(q.srv ? std::string(kSrvPrefix) + q.name : q.name);
    if (e && e->good) ttl = std::min(ttl, e->good->ttl);
  }
  const config::Duration d = ttl == UINT32_MAX ? r.min_ttl : config::Duration(int64_t{ttl} * 1000);
  return std::clamp(d, r.min_ttl, r.max_ttl);
}

void NodeDiscovery::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const auto now = Clock::now();
    auto earliest = Clock::time_point::max();
    std::vector<Watch*> due;
    for (Watch& w : watches_) {
      if (interval(w) == Clock::duration::zero()) continue;  // 0: looked up at start and reload only
      if (w.due <= now) due.push_back(&w);
      else earliest = std::min(earliest, w.due);
    }
    if (due.empty()) {
      if (earliest == Clock::time_point::max()) wake_.wait(lock);
      else wake_.wait_until(lock, earliest);
      continue;
    }
    // The lookup runs without the mutex (update() must not wait for DNS). update() may replace
    // watches_ meanwhile: `due` is used again only when version_ is unchanged.
    std::vector<DnsQuery> queries;
    std::set<std::string> seen;
    for (Watch* w : due) {
      for (const DnsQuery& q : w->names) {
        if (seen.insert(q.srv ? std::string(kSrvPrefix) + q.name : q.name).second) queries.push_back(q);
      }
    }
    const uint64_t version = version_;
    const config::ResolverConfig resolver = config_->resolver;
    const std::vector<std::shared_ptr<const config::UpstreamConfig>> keep = upstreams_;
    lock.unlock();

    dns_lookup(resolver, queries);
    std::set<std::string> changed_names;
    for (const DnsQuery& q : queries) {
      const std::string key = q.srv ? std::string(kSrvPrefix) + q.name : q.name;
      if (name_table().record(key, q)) changed_names.insert(key);
    }
    // Every upstream using a changed name, not only those that were due: the table now holds
    // the new answer, so another upstream's own next lookup of it would see no change.
    std::vector<std::string> changed;
    for (const auto& up : keep) {
      if (std::any_of(up->nodes.begin(), up->nodes.end(), [&](const auto& n) { return changed_names.count(dns_key(n)); })) {
        changed.push_back(up->name);
      }
    }
    if (!changed.empty()) on_change_(std::move(changed));

    lock.lock();
    if (version == version_) {
      const auto after = Clock::now();
      for (Watch* w : due) w->due = after + interval(*w);
    }
  }
}

}  // namespace turnpike::upstream
