// Building a runtime snapshot from a validated Config (main thread, off the data path).
#include "turnpike/proxy/snapshot.h"

#include <algorithm>

#include "builtin_filters.h"
#include "turnpike/proxy/request_context.h"

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

std::shared_ptr<const Snapshot> Snapshot::build(std::shared_ptr<const config::Config> config, uint64_t generation,
                                                std::vector<config::ConfigError>& errors) {
  auto snap = std::make_shared<Snapshot>();
  snap->config = config;
  snap->generation = generation;
  size_t errors_before = errors.size();
  if (!config->via.empty()) {
    snap->via_http10 = "1.0 " + config->via;
    snap->via_http11 = "1.1 " + config->via;
    snap->via_http2 = "2 " + config->via;
  }

  for (const auto& up : config->upstreams) {
    auto resolved = std::make_shared<upstream::ResolvedUpstream>();
    upstream::resolve_upstream(up, *resolved, errors);
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
    rt.filters = build_route_filters(route);
    snap->routes.push_back(std::move(rt));
  }

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
    snap->listeners.push_back(std::move(lr));
  }
  if (errors.size() != errors_before) return nullptr;
  return snap;
}

}  // namespace turnpike::proxy
