// Node discovery: upstream host names (A/AAAA) and SRV names looked up through DNS (c-ares), when
// a snapshot is built and again periodically on the discovery thread (docs/load-balancing.md).
//
// Threading: lookups block the calling thread (the main thread while it builds a snapshot, the
// discovery thread otherwise), never a worker. The table of answers takes a mutex; only snapshot
// builds read it. A name whose lookup fails keeps its last good answer: DNS trouble never
// empties an upstream.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "turnpike/config/config.h"

namespace turnpike::upstream {

// One address a name resolved to. For an SRV name also the target's name, port and weight.
struct DnsTarget {
  boost::asio::ip::address address;
  uint16_t port = 0;    // SRV only (0 for A/AAAA: the node's configured port applies)
  uint32_t weight = 0;  // SRV only
  std::string host;     // SRV only: the target name (TLS server name, health checks' Host)
  bool operator==(const DnsTarget&) const = default;
  bool operator<(const DnsTarget& o) const {  // address order, for answers that compare equal
    if (address != o.address) return address < o.address;
    if (port != o.port) return port < o.port;
    if (weight != o.weight) return weight < o.weight;
    return host < o.host;
  }
};

// A good answer: the addresses (sorted, no duplicates) and the smallest TTL among the records.
struct DnsAnswer {
  std::vector<DnsTarget> targets;
  uint32_t ttl = 0;  // seconds
  bool same_targets(const DnsAnswer& o) const { return targets == o.targets; }
};

// The table key of a node's name: "app.internal", or "srv://_http._tcp.app.internal".
std::string dns_key(const config::UpstreamNodeConfig& node);

// One name to look up and what came of it.
struct DnsQuery {
  std::string name;
  bool srv = false;
  bool ok = false;        // false: `error` says why, `answer` is empty
  DnsAnswer answer;
  std::string error;      // "NXDOMAIN", "connection refused", ...
  static DnsQuery of(const config::UpstreamNodeConfig& node) {
    DnsQuery q;
    q.name = node.host;
    q.srv = node.srv;
    return q;
  }
};

// Looks every query up concurrently through `cfg`'s servers (or the system's resolv.conf and
// hosts file), keeping the addresses `cfg.family` allows. Blocks until every query is answered
// or has timed out. Thread-safe (each call has its own c-ares channel).
void dns_lookup(const config::ResolverConfig& cfg, std::vector<DnsQuery>& queries);

// The latest lookup of every name in the process: the last good answer, and the last error
// when the latest lookup failed.
class NameTable {
 public:
  struct Entry {
    std::optional<DnsAnswer> good;  // the last good answer (kept through failures)
    std::string error;              // the latest lookup's error; empty when it succeeded
  };
  std::optional<Entry> get(const std::string& key) const;
  // Records a lookup: true when its good answer differs from the one kept (a change to apply).
  bool record(const std::string& key, const DnsQuery& q);

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};
NameTable& name_table();

// Looks up every name `config`'s upstreams use, now, and records the answers (snapshot build).
// A failure that leaves a name with an older good answer is logged as a warning.
void lookup_config_names(const config::Config& config);
// Looks up the names among `nodes` that the table has no answer for yet (a node file's new
// names), now, with `resolver`.
void lookup_new_names(const config::ResolverConfig& resolver, const std::vector<config::UpstreamNodeConfig>& nodes);

// Lookup counts since start, for /metrics (any thread).
struct DiscoveryStats {
  std::atomic<uint64_t> lookups_ok{0};
  std::atomic<uint64_t> lookups_failed{0};
  std::atomic<uint64_t> changes{0};  // answers that changed an upstream's nodes
};
DiscoveryStats& discovery_stats();

// The discovery thread: looks the upstreams' names up again, each upstream at its interval
// (resolve_interval, the resolver's interval, or its records' TTL within min_ttl..max_ttl), and
// reports the upstreams whose addresses changed. It never swaps anything itself: `on_change`
// runs on the discovery thread and is expected to post the work to the server's own loop, where
// reloads run too, so a DNS change and a reload never race.
class NodeDiscovery {
 public:
  using OnChange = std::function<void(std::vector<std::string> upstreams)>;
  NodeDiscovery() = default;
  ~NodeDiscovery();  // stops and joins
  NodeDiscovery(const NodeDiscovery&) = delete;
  NodeDiscovery& operator=(const NodeDiscovery&) = delete;

  void start(OnChange on_change);
  void stop();
  // Thread-safe: the names to watch from now on: those of `upstreams`, the snapshot's upstream
  // configs (a node file's update replaces one of the config's own), with `config`'s resolver
  // settings. After a start or a reload every name has just been looked up, so every upstream's
  // next lookup comes one interval later. After a node file's update (`all_looked_up` false) only
  // its new names were: an upstream whose names are unchanged keeps its schedule (a file updated
  // more often than an interval must not postpone the other upstreams' lookups for ever).
  void update(std::shared_ptr<const config::Config> config,
              std::vector<std::shared_ptr<const config::UpstreamConfig>> upstreams, bool all_looked_up = true);

 private:
  using Clock = std::chrono::steady_clock;
  struct Watch {
    const config::UpstreamConfig* upstream;
    std::vector<DnsQuery> names;  // its host names (IP literals need no lookup)
    Clock::time_point due;
  };
  void run();
  // The wait before `w`'s next lookup: its interval, or its answers' TTL when TTLs are respected.
  Clock::duration interval(const Watch& w) const;
  // Looks up the watches that are due (mutex not held); the names of the upstreams that changed.
  std::vector<std::string> lookup_due(std::vector<Watch*>& due);

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::shared_ptr<const config::Config> config_;  // the resolver settings
  std::vector<std::shared_ptr<const config::UpstreamConfig>> upstreams_;  // the Watches point to them
  std::vector<Watch> watches_;
  uint64_t version_ = 0;  // bumped by update(): a lookup of older watches is not rescheduled
  OnChange on_change_;
  std::thread thread_;
};

}  // namespace turnpike::upstream
