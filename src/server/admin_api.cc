// The admin API's JSON documents (admin.h): status, upstreams, the effective config, reload
// results. Main thread; built on request, never on the data path.
#include <initializer_list>
#include <string>
#include <string_view>

#include "admin.h"
#include "metrics_export.h"
#include "turnpike/metrics/shard.h"
#include "turnpike/proxy/snapshot.h"
#include "turnpike/upstream/health.h"

namespace turnpike::proxy {

namespace {

std::string errors_array(const std::vector<config::ConfigError>& errors) {
  std::string out = "[";
  for (size_t i = 0; i < errors.size(); ++i) {
    const auto& e = errors[i];
    if (i) out += ",";
    out += "{\"file\":" + json_string(e.file) + ",\"line\":" + std::to_string(e.line) +
           ",\"message\":" + json_string(e.message) + ",\"text\":" + json_string(e.to_string()) + "}";
  }
  return out + "]";
}

// Appends the parts in order. (Instead of `out += "," + json_string(x) + ...`: GCC 12 warns,
// wrongly, of overlapping copies (-Wrestrict) when a literal is prepended to a temporary string.)
void append(std::string& out, std::initializer_list<std::string_view> parts) {
  for (std::string_view p : parts) out += p;
}

std::string plugin_names(const config::PluginList& plugins) {
  std::string out = "[";
  for (size_t i = 0; i < plugins.items.size(); ++i) append(out, {i ? "," : "", json_string(plugins.items[i].name)});
  return out + "]";
}

std::string string_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) append(out, {i ? "," : "", json_string(items[i])});
  return out + "]";
}

std::string_view protocol_name(config::UpstreamProtocol p) {
  switch (p) {
    case config::UpstreamProtocol::http1: return "http1";
    case config::UpstreamProtocol::h2c: return "h2c";
    case config::UpstreamProtocol::h2: return "h2";
  }
  return "?";
}

}  // namespace

std::string status_json(const StatusInput& in) {
  std::string out = "{\"version\":" + json_string(build_version()) + ",\"commit\":" +
                    json_string(build_commit()) + ",\"pid\":" + std::to_string(in.pid) +
                    ",\"start_time\":" + std::to_string(in.start_time) + ",\"last_upgrade\":{\"result\":" +
                    json_string(in.last_upgrade) + ",\"message\":" + json_string(in.last_upgrade_message) +
                    "},\"uptime_seconds\":" + std::to_string(in.uptime_seconds) +
                    ",\"workers\":" + std::to_string(in.workers) + ",\"readiness\":" + json_string(in.readiness) +
                    ",\"config_generation\":" + std::to_string(in.generation) + ",\"reloads\":{\"ok\":" +
                    std::to_string(in.reloads_ok) + ",\"failed\":" + std::to_string(in.reloads_failed) +
                    "},\"last_reload\":{\"result\":" + json_string(in.last_reload) +
                    ",\"errors\":" + errors_array(in.reload_errors) + "},\"listeners\":{";
  for (size_t i = 0; i < in.listeners.size(); ++i) {
    append(out, {i ? "," : "", json_string(in.listeners[i].first), ":", json_string(in.listeners[i].second)});
  }
  return out + "}}\n";
}

std::string upstreams_json(const Snapshot& snapshot, const std::vector<const metrics::WorkerMetrics*>& shards) {
  std::string out = "{\"upstreams\":[";
  for (size_t u = 0; u < snapshot.upstreams.size(); ++u) {
    const auto& up = *snapshot.upstreams[u];
    int64_t in_flight = 0;
    if (u < snapshot.upstream_series.size()) {
      for (const auto* shard : shards) {
        in_flight += static_cast<int64_t>(metrics::load(shard->upstream(snapshot.upstream_series[u]).in_flight));
      }
    }
    append(out, {u ? "," : "", "{\"name\":", json_string(up.config->name), ",\"protocol\":",
                 json_string(protocol_name(up.config->protocol)), ",\"in_flight\":", std::to_string(in_flight),
                 ",\"nodes\":["});
    const int64_t now_ms = upstream::health_now_ms();
    for (size_t n = 0; n < up.nodes.size(); ++n) {
      // The node's shared health state (upstream/health.h): down (active checks, or a new node
      // starting unhealthy), ejected (passive checks, until a time), or healthy.
      std::string health = "healthy";
      bool ejected = false;
      uint32_t failures = 0;
      if (up.health && n < up.health->nodes.size()) {
        const upstream::NodeHealth& h = *up.health->nodes[n];
        ejected = h.ejected_until.load(std::memory_order_relaxed) > now_ms;
        failures = h.failures.load(std::memory_order_relaxed);
        if (h.down.load(std::memory_order_relaxed)) {
          health = "down";
        } else if (ejected) {
          health = "ejected";
        }
      }
      int64_t node_in_flight = 0;  // (a node past the series cap shows the overflow series' count)
      if (u < snapshot.node_series.size() && n < snapshot.node_series[u].size()) {
        const uint32_t id = snapshot.node_series[u][n];
        for (const auto* shard : shards) node_in_flight += static_cast<int64_t>(metrics::load(shard->node(id).in_flight));
      }
      append(out, {n ? "," : "", "{\"address\":", json_string(up.nodes[n].address), ",\"host\":",
                   json_string(up.nodes[n].host), ",\"weight\":", std::to_string(up.nodes[n].weight),
                   ",\"health\":", json_string(health), ",\"ejected\":", ejected ? "true" : "false",
                   ",\"failures\":", std::to_string(failures), ",\"in_flight\":", std::to_string(node_in_flight),
                   "}"});
    }
    out += "]}";
  }
  return out + "]}\n";
}

std::string config_json(const Snapshot& snapshot) {
  const config::Config& cfg = *snapshot.config;
  std::string out = "{\"file\":" + json_string(cfg.file) + ",\"workers\":" + std::to_string(cfg.workers) +
                    ",\"drain_timeout_ms\":" + std::to_string(cfg.drain_timeout.count()) +
                    ",\"via\":" + json_string(cfg.via) + ",\"listeners\":[";
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const auto& l = cfg.listeners[i];
    append(out, {i ? "," : "", "{\"name\":", json_string(l.name), ",\"address\":", json_string(l.address),
                 ",\"port\":", std::to_string(l.port), ",\"tls\":", l.tls ? "true" : "false",
                 ",\"plugins\":", plugin_names(l.plugins), "}"});
  }
  out += "],\"upstreams\":[";
  for (size_t i = 0; i < snapshot.upstreams.size(); ++i) {
    // The upstream's config in use: a node file's update replaces the one loaded from the file.
    const config::UpstreamConfig& u = *snapshot.upstreams[i]->config;
    append(out, {i ? "," : "", "{\"name\":", json_string(u.name), ",\"protocol\":",
                 json_string(protocol_name(u.protocol)), ",\"retries\":", std::to_string(u.retries),
                 ",\"connect_timeout_ms\":", std::to_string(u.connect_timeout.count()),
                 ",\"read_timeout_ms\":", std::to_string(u.read_timeout.count())});
    if (!u.nodes_file.empty()) append(out, {",\"nodes_file\":", json_string(u.nodes_file)});
    out += ",\"nodes\":[";
    for (size_t n = 0; n < u.nodes.size(); ++n) {
      append(out, {n ? "," : "", "{\"host\":", json_string(u.nodes[n].host), ",\"port\":",
                   std::to_string(u.nodes[n].port), ",\"weight\":", std::to_string(u.nodes[n].weight), "}"});
    }
    out += "]}";
  }
  out += "],\"routes\":[";
  for (size_t i = 0; i < cfg.routes.size(); ++i) {
    const auto& r = cfg.routes[i];
    append(out, {i ? "," : "", "{\"name\":", json_string(r.name), ",\"listeners\":", string_array(r.listeners),
                 ",\"upstream\":", json_string(r.upstream), ",\"respond\":",
                 r.respond ? std::to_string(r.respond->status) : std::string("null"), ",\"plugins\":",
                 plugin_names(r.plugins), "}"});
  }
  out += "],\"plugins\":" + plugin_names(cfg.plugins) + ",\"consumers\":[";
  for (size_t i = 0; i < cfg.consumers.size(); ++i) {
    append(out, {i ? "," : "", "{\"username\":", json_string(cfg.consumers[i].username), ",\"plugins\":",
                 plugin_names(cfg.consumers[i].plugins), "}"});
  }
  out += "],\"admin\":{\"listen\":" + json_string(cfg.admin.address + ":" + std::to_string(cfg.admin.port)) +
         ",\"token\":" + (cfg.admin.token.empty() ? std::string("null") : json_string("<redacted>")) +
         ",\"metrics\":" + (cfg.admin.metrics ? "true" : "false") +
         ",\"series_cap\":" + std::to_string(cfg.admin.series_cap) + "}}\n";
  return out;
}

std::string reload_json(bool ok, uint64_t generation, const std::vector<config::ConfigError>& errors) {
  return std::string("{\"result\":") + (ok ? "\"ok\"" : "\"failed\"") + ",\"config_generation\":" +
         std::to_string(generation) + ",\"errors\":" + errors_array(errors) + "}\n";
}

}  // namespace turnpike::proxy
