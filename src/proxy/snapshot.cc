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

void RequestContext::reset() {
  snapshot = nullptr;
  listener = nullptr;
  head = {};
  headers.clear();
  scheme = "http";
  client_ip = {};
  remote_addr = {};
  host.clear();
  authority = {};
  path.clear();
  query = {};
  has_query = false;
  upgrade = {};
  match.matched = false;
  match.param_count = 0;
  route = nullptr;
  request_edits.clear();
  response_edits.clear();
  upstream_override = SIZE_MAX;
  local_response.status = 0;
  local_response.content_type = {};
  local_response.body.clear();
  local_response.headers.clear();
  pending.reset();
  arena.clear();
  body_remaining = 0;
  body_done = true;
  request_body_bytes = 0;
  body_views.clear();
  response_status = 0;
  response_headers.clear();
  response_trailers.clear();
  response_body_bytes = 0;
  response_started = false;
  close_connection = false;
  upstream_addr = {};
  upstream_status = 0;
  upstream_tries = {};
  upstream_time = {};
  error = {};
  drop_upstream();
  client_aborted = false;
  out_head.clear();
  connection_tokens.clear();
  forwarded_for.clear();
}

}  // namespace turnpike::proxy
