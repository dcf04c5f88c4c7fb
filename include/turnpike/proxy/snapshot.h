// The runtime config snapshot: a validated Config plus everything derived from it that the data
// path needs (one router per listener, resolved upstreams, per-route filter chains).
//
// Built whole on the main thread at start and on every reload; if building fails nothing
// changes. Immutable once built and shared by all workers; each request keeps the snapshot it
// started with, so a reload never changes a request midway.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "turnpike/config/config.h"
#include "turnpike/proxy/filter.h"
#include "turnpike/router/router.h"
#include "turnpike/tls/context.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::proxy {

struct PluginCatalog;

}  // namespace turnpike::proxy
namespace turnpike::metrics {
class SeriesRegistry;
}  // namespace turnpike::metrics
namespace turnpike::proxy {

// A filter chain: highest priority first; the filters belong to the snapshot (Snapshot::filters).
using FilterChain = std::vector<const HttpFilter*>;

struct RouteRuntime {
  const config::RouteConfig* config = nullptr;
  size_t upstream_index = SIZE_MAX;  // into Snapshot::upstreams; SIZE_MAX for static responses
  uint32_t series = 0;               // the route's metric id (metrics/series.h)
};

struct ListenerRuntime {
  const config::ListenerConfig* config = nullptr;
  std::shared_ptr<const router::Router> router;  // the routes that apply to this listener (shared by
                                                 // the snapshots node discovery derives)
  std::shared_ptr<const tls::ServerContext> tls;  // null: cleartext
  // By route index: global, this listener's and the route's filters merged (the more specific
  // level's conf wins for the same plugin) and ordered, once per snapshot.
  std::vector<FilterChain> chains;
  uint32_t series = 0;  // the listener's metric id (metrics/series.h)
};

struct ConsumerRuntime {
  const config::ConsumerConfig* config = nullptr;
  FilterChain filters;  // the consumer's plugins, ordered; merged into a request's on attach
};

struct Snapshot {
  std::shared_ptr<const config::Config> config;
  uint64_t generation = 0;
  std::vector<std::shared_ptr<const upstream::ResolvedUpstream>> upstreams;  // config order
  std::vector<RouteRuntime> routes;                                         // config order
  std::vector<ListenerRuntime> listeners;                                   // config order
  std::vector<ConsumerRuntime> consumers;                                   // config order
  std::vector<std::shared_ptr<const HttpFilter>> filters;  // every filter the chains point to
  std::shared_ptr<const PluginCatalog> plugins;            // null: no Lua plugin configured
  // The Via field value added to forwarded requests, by the protocol the request came in with
  // ("1.0 name", "1.1 name", "2 name"); empty when Via is off.
  std::string via_http10, via_http11, via_http2;
  // Metric ids (metrics/series.h): by upstream index, and by plugin (PluginCatalog::names).
  std::vector<uint32_t> upstream_series;
  std::vector<uint32_t> plugin_series;
  std::vector<std::vector<uint32_t>> node_series;  // by upstream index, then node index

  const ListenerRuntime* find_listener(std::string_view name) const;
  size_t find_upstream(std::string_view name) const;  // SIZE_MAX when absent

  // Builds a snapshot; on failure returns null with the reasons (file:line) in `errors`.
  static std::shared_ptr<const Snapshot> build(std::shared_ptr<const config::Config> config,
                                               uint64_t generation,
                                               std::vector<config::ConfigError>& errors,
                                               metrics::SeriesRegistry* series = nullptr);

  // Node discovery (upstream/discovery.h): `current` with the named upstreams' nodes expanded
  // again from the name table, as a reload of those upstreams alone (same generation, config,
  // routes and filters; the nodes' health kept by address). Null when none of their node lists
  // changed. The changes are logged. With `series`, the new nodes get their metric ids (the
  // per-node series are by address: an index into the old list would name another node).
  static std::shared_ptr<const Snapshot> with_new_nodes(const std::shared_ptr<const Snapshot>& current,
                                                        const std::vector<std::string>& upstream_names,
                                                        metrics::SeriesRegistry* series = nullptr);

  // Node files (config `nodes_file`, server/node_files.h): `current` with upstream `name`'s nodes
  // replaced by `nodes`, as a reload of that upstream alone (same generation, config, routes and
  // filters; health, pools and checks of the addresses that stay are kept). Names among the nodes
  // are looked up as a reload would. Null when the upstream is gone, when the nodes are those in
  // use (nothing to do; `errors` empty), or when they cannot be used (`errors` says why).
  static std::shared_ptr<const Snapshot> with_node_file(const std::shared_ptr<const Snapshot>& current,
                                                        const std::string& name,
                                                        std::vector<config::UpstreamNodeConfig> nodes,
                                                        std::vector<config::ConfigError>& errors,
                                                        metrics::SeriesRegistry* series = nullptr);
};

}  // namespace turnpike::proxy
