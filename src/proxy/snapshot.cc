// Building a runtime snapshot from a validated Config (main thread, off the data path).
#include "turnpike/proxy/snapshot.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string_view>
#include <unordered_set>

#include "builtin_filters.h"
#include "turnpike/metrics/series.h"
#include "turnpike/proxy/plugins.h"
#include "turnpike/proxy/request_context.h"
#include "turnpike/upstream/discovery.h"

namespace turnpike::proxy {

const ListenerRuntime* Snapshot::find_listener(std::string_view name) const {
  for (const auto& l : listeners) {
    if (l.config->name == name) return &l;
  }
  return nullptr;
}

size_t Snapshot::find_upstream(std::string_view name) const {
  for (size_t i = 0; i < upstreams.size(); ++i) {
    if (upstreams[i]->config->name == name) return i;
  }
  return SIZE_MAX;
}

namespace {

// Merges filter lists, later lists winning for a filter of the same name, then orders the result
// by priority (highest first; equal priorities keep the order they were configured in).
FilterChain merge_chain(std::initializer_list<const FilterChain*> levels) {
  FilterChain out;
  for (const FilterChain* level : levels) {
    for (const HttpFilter* f : *level) {
      auto same = std::find_if(out.begin(), out.end(), [f](const HttpFilter* o) { return o->name() == f->name(); });
      if (same != out.end()) *same = f; else out.push_back(f);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const HttpFilter* a, const HttpFilter* b) { return a->priority() > b->priority(); });
  return out;
}

// Every name the snapshot counts under gets its metric id (a new name a new id, up to the cap).
void assign_series(Snapshot& snap, metrics::SeriesRegistry& series) {
  using metrics::Space;
  series.begin_snapshot();
  for (auto& r : snap.routes) r.series = series.id(Space::route, r.config->name);
  for (auto& l : snap.listeners) l.series = series.id(Space::listener, l.config->name);
  snap.upstream_series.clear();
  for (const auto& u : snap.upstreams) snap.upstream_series.push_back(series.id(Space::upstream, u->config->name));
  snap.node_series.clear();
  for (const auto& u : snap.upstreams) {
    auto& ids = snap.node_series.emplace_back();
    for (const auto& n : u->nodes) ids.push_back(series.id(Space::node, u->config->name + " " + n.address));
  }
  snap.plugin_series.clear();
  if (snap.plugins) {
    for (const auto& name : snap.plugins->names) snap.plugin_series.push_back(series.id(Space::plugin, name));
  }
}

}  // namespace

std::shared_ptr<const Snapshot> Snapshot::build(std::shared_ptr<const config::Config> config, uint64_t generation,
                                                std::vector<config::ConfigError>& errors,
                                                metrics::SeriesRegistry* series) {
  auto snap = std::make_shared<Snapshot>();
  snap->config = config;
  snap->generation = generation;
  size_t errors_before = errors.size();
  if (!config->via.empty()) {
    snap->via_http10 = "1.0 " + config->via;
    snap->via_http11 = "1.1 " + config->via;
    snap->via_http2 = "2 " + config->via;
  }

  // Every host name, looked up once now (not per upstream using it), into the name table.
  upstream::lookup_config_names(*config);
  for (const auto& up : config->upstreams) {
    auto resolved = std::make_shared<upstream::ResolvedUpstream>();
    upstream::resolve_upstream(up, *resolved, errors, config->zone);
    snap->upstreams.push_back(std::move(resolved));
  }

  for (const auto& route : config->routes) {
    RouteRuntime rt;
    rt.config = &route;
    if (!route.respond) {
      rt.upstream_index = snap->find_upstream(route.upstream);
      if (rt.upstream_index == SIZE_MAX) {
        errors.push_back({route.source.file, route.source.line,
                          "route \"" + route.name + "\": upstream \"" + route.upstream + "\" is not defined"});
      }
    }
    snap->routes.push_back(std::move(rt));
  }

  // ---- filters: built-in ones per route, then one per configured Lua plugin ----
  std::vector<FilterChain> route_filters(config->routes.size());
  for (size_t r = 0; r < config->routes.size(); ++r) {
    for (auto& f : build_route_filters(config->routes[r])) {
      route_filters[r].push_back(f.get());
      snap->filters.push_back(std::move(f));
    }
  }
  FilterChain global_filters;
  std::vector<FilterChain> listener_filters(config->listeners.size());
  snap->consumers.resize(config->consumers.size());
  for (size_t c = 0; c < config->consumers.size(); ++c) snap->consumers[c].config = &config->consumers[c];
  snap->plugins = build_plugin_catalog(*config, errors);
  if (snap->plugins) {
    const PluginCatalog& catalog = *snap->plugins;
    for (size_t u = 0; u < catalog.uses.size(); ++u) {
      auto f = std::make_shared<LuaPluginFilter>(snap->plugins, u);
      const PluginLevel& level = catalog.uses[u].level;
      auto index_of = [&](const auto& items, auto name_of) {
        for (size_t i = 0; i < items.size(); ++i) {
          if (name_of(items[i]) == level.name) return i;
        }
        return size_t{0};
      };
      switch (level.kind) {
        case PluginLevel::Kind::global: global_filters.push_back(f.get()); break;
        case PluginLevel::Kind::listener:
          listener_filters[index_of(config->listeners, [](const auto& l) -> const std::string& { return l.name; })]
              .push_back(f.get());
          break;
        case PluginLevel::Kind::route:
          route_filters[index_of(config->routes, [](const auto& r) -> const std::string& { return r.name; })]
              .push_back(f.get());
          break;
        case PluginLevel::Kind::consumer:
          // A credential (key-auth's key) is looked up, not run.
          if (catalog.info[catalog.uses[u].plugin].credential) break;
          snap->consumers[index_of(config->consumers, [](const auto& c) -> const std::string& { return c.username; })]
              .filters.push_back(f.get());
          break;
      }
      snap->filters.push_back(std::move(f));
    }
  } else if (errors.size() != errors_before) {
    return nullptr;
  }
  for (auto& c : snap->consumers) c.filters = merge_chain({&c.filters});

  for (const auto& listener : config->listeners) {
    std::vector<router::RouteRule> rules;
    for (const auto& route : config->routes) {
      if (route.listeners.empty() ||
          std::find(route.listeners.begin(), route.listeners.end(), listener.name) != route.listeners.end()) {
        rules.push_back(route.rule);
      }
    }
    std::string error;
    ListenerRuntime lr;
    lr.config = &listener;
    lr.router = router::Router::build(std::move(rules), error);
    if (!lr.router) {
      errors.push_back({listener.source.file, listener.source.line,
                        "listener \"" + listener.name + "\": cannot build routes: " + error});
    }
    if (listener.tls) lr.tls = tls::ServerContext::build(listener, errors);
    const size_t li = snap->listeners.size();
    lr.chains.resize(config->routes.size());
    for (size_t r = 0; r < config->routes.size(); ++r) {
      lr.chains[r] = merge_chain({&global_filters, &listener_filters[li], &route_filters[r]});
    }
    snap->listeners.push_back(std::move(lr));
  }
  if (errors.size() != errors_before) return nullptr;
  if (series) assign_series(*snap, *series);
  return snap;
}

namespace {

// "10.0.0.1:80 10.0.0.2:80": the addresses of `a` that `b` does not have, the first 16 of them
// ("... and 84 more"), so that a name whose 2,000 addresses all change logs a line, not a page.
// A node at the same index in both is there; the others are looked up in a set of the addresses
// `b` has at the other indexes. (An upstream's addresses are unique, so a node of `a` can match
// no index where `b` holds `a`'s own node. A set of all of `b` cost most of this for 2,000 nodes
// of which 100 changed; comparing every pair was 4 million comparisons.)
std::string missing_from(const upstream::ResolvedUpstream& a, const upstream::ResolvedUpstream& b) {
  constexpr size_t kListed = 16;
  auto same_at = [&](size_t i) { return i < a.nodes.size() && i < b.nodes.size() && a.nodes[i].address == b.nodes[i].address; };
  std::unordered_set<std::string_view> in_b;
  for (size_t j = 0; j < b.nodes.size(); ++j) {
    if (!same_at(j)) in_b.insert(b.nodes[j].address);
  }
  std::string out;
  size_t missing = 0;
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    if (same_at(i) || in_b.count(a.nodes[i].address)) continue;
    if (missing++ < kListed) {
      if (!out.empty()) out += ' ';
      out += a.nodes[i].address;
    }
  }
  if (missing > kListed) out += " ... and " + std::to_string(missing - kListed) + " more";
  return out.empty() ? "none" : out;
}

// Upstream u of `next` becomes `fresh`; with `series`, its nodes get their metric ids (by
// address: an index into the old list would name another node).
void replace_upstream(Snapshot& next, size_t u, std::shared_ptr<const upstream::ResolvedUpstream> fresh,
                      metrics::SeriesRegistry* series) {
  if (u < next.node_series.size()) {
    std::vector<uint32_t>& ids = next.node_series[u];
    ids.clear();
    if (series) {
      const std::string prefix = fresh->config->name + " ";
      for (const auto& n : fresh->nodes) ids.push_back(series->id(metrics::Space::node, prefix + n.address));
    }
  }
  next.upstreams[u] = std::move(fresh);
}

}  // namespace

std::shared_ptr<const Snapshot> Snapshot::with_new_nodes(const std::shared_ptr<const Snapshot>& current,
                                                         const std::vector<std::string>& upstream_names,
                                                         metrics::SeriesRegistry* series) {
  std::shared_ptr<Snapshot> next;
  for (const std::string& name : upstream_names) {
    const size_t u = current->find_upstream(name);
    if (u == SIZE_MAX) continue;  // gone in a reload since the lookup
    const upstream::ResolvedUpstream& old = *current->upstreams[u];
    std::vector<config::ConfigError> errors;
    auto fresh = std::make_shared<upstream::ResolvedUpstream>();
    // From the table only: every name in it was looked up by this config's build.
    if (!upstream::resolve_upstream(*old.config, *fresh, errors, current->config->zone, &old) || fresh->nodes.empty()) {
      for (const auto& e : errors) spdlog::warn("node discovery: {}", e.to_string());
      continue;
    }
    if (upstream::same_nodes(old, *fresh)) continue;  // a reload applied it already
    fresh->own_config = old.own_config;  // (a node file's nodes: old.config points into it)
    // Warning when nodes go: requests in flight to them finish, new ones go elsewhere.
    const std::string added = missing_from(*fresh, old), removed = missing_from(old, *fresh);
    const auto level = removed == "none" ? spdlog::level::info : spdlog::level::warn;
    spdlog::log(level, "upstream \"{}\": nodes changed by DNS: {} nodes, added {}, removed {}", name,
                fresh->nodes.size(), added, removed);
    if (!next) next = std::make_shared<Snapshot>(*current);
    replace_upstream(*next, u, std::move(fresh), series);
  }
  return next;
}

std::shared_ptr<const Snapshot> Snapshot::with_node_file(const std::shared_ptr<const Snapshot>& current,
                                                         const std::string& name,
                                                         std::vector<config::UpstreamNodeConfig> nodes,
                                                         std::vector<config::ConfigError>& errors,
                                                         metrics::SeriesRegistry* series) {
  const size_t u = current->find_upstream(name);
  if (u == SIZE_MAX) return nullptr;  // gone in a reload since the file was read
  const upstream::ResolvedUpstream& old = *current->upstreams[u];
  if (old.config->nodes == nodes) return nullptr;  // (lines moved, comments changed: the same nodes)
  auto cfg = std::make_shared<config::UpstreamConfig>(old.config->with_nodes(std::move(nodes)));
  upstream::lookup_new_names(current->config->resolver, cfg->nodes);
  auto fresh = std::make_shared<upstream::ResolvedUpstream>();
  if (!upstream::resolve_upstream(*cfg, *fresh, errors, current->config->zone, &old)) return nullptr;
  if (fresh->nodes.empty()) {
    errors.push_back({cfg->nodes_file, 0, "upstream \"" + name + "\": its names resolve to no address"});
    return nullptr;
  }
  fresh->own_config = std::move(cfg);
  const std::string added = missing_from(*fresh, old), removed = missing_from(old, *fresh);
  const auto level = removed == "none" ? spdlog::level::info : spdlog::level::warn;
  spdlog::log(level, "upstream \"{}\": nodes changed by {}: {} nodes, added {}, removed {}", name,
              fresh->own_config->nodes_file, fresh->nodes.size(), added, removed);
  auto next = std::make_shared<Snapshot>(*current);
  replace_upstream(*next, u, std::move(fresh), series);
  return next;
}

}  // namespace turnpike::proxy
