// The /metrics exposition (metrics_export.h): sums the workers' cells (read relaxed, metrics/
// shard.h) per label value; small families through prometheus-cpp's TextSerializer, the
// per-route and per-upstream ones as text directly (TextFamily).
// Series whose value is still zero are left out: a config of thousands of routes scrapes in
// proportion to the routes that served traffic.
#include "metrics_export.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <charconv>
#include <deque>
#include <iterator>
#include <limits>
#include <sstream>
#include <string_view>

#include "turnpike/common/version.h"
#include "turnpike/proxy/outcome.h"
#include "turnpike/proxy/snapshot.h"
#include "turnpike/proxy/worker.h"
#include "turnpike/upstream/health.h"

namespace turnpike::proxy {

// The ones `turnpike --version` prints (cmake/version.cmake).
std::string build_version() { return std::string(turnpike::version()); }
std::string build_commit() { return std::string(turnpike::git_commit()); }

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using metrics::Space;

// The worker counters exported as they are: family, help, one label (or none) and the member.
struct CounterRow {
  std::string_view family;
  std::string_view help;
  std::string_view label;  // empty: no label
  std::string_view value;
  Counter WorkerCounters::*member;
};

constexpr CounterRow kCounterRows[] = {
    {"turnpike_connections_rejected_total", "Client connections refused at max_connections_per_worker.", "", "",
     &WorkerCounters::connections_rejected},
    {"turnpike_connections_closed_for_limit_total", "Client connections closed to admit a new one, by their state.",
     "state", "idle", &WorkerCounters::idle_closed_for_limit},
    {"turnpike_connections_closed_for_limit_total", "", "state", "partial_head", &WorkerCounters::slow_closed_for_limit},
    {"turnpike_bad_requests_total", "Requests refused by the parser (4xx and close), 414 and 431 included.", "", "",
     &WorkerCounters::bad_requests},
    {"turnpike_timeouts_total", "Client-side timeouts, by kind.", "kind", "header", &WorkerCounters::header_timeouts},
    {"turnpike_timeouts_total", "", "kind", "body", &WorkerCounters::body_timeouts},
    {"turnpike_timeouts_total", "", "kind", "send", &WorkerCounters::send_timeouts},
    {"turnpike_timeouts_total", "", "kind", "keepalive", &WorkerCounters::keepalive_timeouts},
    {"turnpike_timeouts_total", "", "kind", "tls_handshake", &WorkerCounters::tls_handshake_timeouts},
    {"turnpike_timeouts_total", "", "kind", "tunnel_idle", &WorkerCounters::tunnel_timeouts},
    {"turnpike_timeouts_total", "", "kind", "http2_idle", &WorkerCounters::h2_idle_timeouts},
    {"turnpike_max_requests_reached_total", "Client connections closed at max_requests_per_connection.", "", "",
     &WorkerCounters::max_requests_reached},
    {"turnpike_upstream_retries_total", "Requests sent again to another node (or again to the same).", "", "",
     &WorkerCounters::retries},
    {"turnpike_tls_handshakes_total", "TLS handshakes with clients, by result.", "result", "ok",
     &WorkerCounters::tls_handshakes},
    {"turnpike_tls_handshakes_total", "", "result", "failed", &WorkerCounters::tls_handshake_failures},
    {"turnpike_tls_handshakes_total", "", "result", "timeout", &WorkerCounters::tls_handshake_timeouts},
    {"turnpike_tls_resumed_total", "Client TLS handshakes resumed from a session ticket.", "", "",
     &WorkerCounters::tls_resumed},
    {"turnpike_upstream_tls_failures_total", "TLS handshakes with upstream nodes that failed.", "", "",
     &WorkerCounters::upstream_tls_failures},
    {"turnpike_tunnels_total", "Upgraded connections (WebSocket) relayed.", "", "", &WorkerCounters::tunnels},
    {"turnpike_http2_connections_total", "HTTP/2 client connections.", "", "", &WorkerCounters::h2_connections},
    {"turnpike_http2_streams_total", "HTTP/2 client streams that carried a request.", "", "",
     &WorkerCounters::h2_streams},
    {"turnpike_http2_stream_resets_total", "HTTP/2 client streams reset, by who and why.", "reason", "client",
     &WorkerCounters::h2_client_resets},
    {"turnpike_http2_stream_resets_total", "", "reason", "malformed", &WorkerCounters::h2_malformed},
    {"turnpike_http2_stream_resets_total", "", "reason", "refused", &WorkerCounters::h2_refused_streams},
    {"turnpike_http2_cutoffs_total", "HTTP/2 client connections cut off by a protection, by reason.", "reason",
     "rapid_reset", &WorkerCounters::h2_rapid_resets},
    {"turnpike_http2_cutoffs_total", "", "reason", "continuation_flood", &WorkerCounters::h2_continuation_floods},
    {"turnpike_http2_cutoffs_total", "", "reason", "hpack_bomb", &WorkerCounters::h2_hpack_bombs},
    {"turnpike_http2_cutoffs_total", "", "reason", "control_flood", &WorkerCounters::h2_control_floods},
    {"turnpike_http2_cutoffs_total", "", "reason", "protocol_error", &WorkerCounters::h2_protocol_errors},
    {"turnpike_http2_header_lists_too_large_total", "HTTP/2 requests answered 431 (max_header_list_size).", "", "",
     &WorkerCounters::h2_header_lists_too_large},
    {"turnpike_http2_goaways_total", "Graceful GOAWAYs sent to HTTP/2 clients (drain, reload, limits).", "", "",
     &WorkerCounters::h2_goaways},
    {"turnpike_http2_upstream_connections_total", "HTTP/2 upstream connections established.", "", "",
     &WorkerCounters::h2_upstream_connections},
    {"turnpike_http2_upstream_streams_total", "Requests sent to upstreams as HTTP/2 streams.", "", "",
     &WorkerCounters::h2_upstream_streams},
    {"turnpike_http2_upstream_resets_total", "HTTP/2 upstream streams reset or broken.", "", "",
     &WorkerCounters::h2_upstream_resets},
    {"turnpike_http2_upstream_goaways_total", "GOAWAY frames received from upstreams.", "", "",
     &WorkerCounters::h2_upstream_goaways},
    {"turnpike_http2_upstream_connections_lost_total", "HTTP/2 upstream connections lost with streams open.", "",
     "", &WorkerCounters::h2_upstream_lost},
    {"turnpike_upstream_retry_budget_exhausted_total", "Retries an upstream's retry budget refused.", "", "",
     &WorkerCounters::retry_budget_exhausted},
    {"turnpike_proxy_protocol_refused_total", "PROXY protocol listeners: connections closed, by reason.", "reason",
     "untrusted", &WorkerCounters::proxy_protocol_untrusted},
    {"turnpike_proxy_protocol_refused_total", "", "reason", "invalid", &WorkerCounters::proxy_protocol_invalid},
    {"turnpike_proxy_protocol_refused_total", "", "reason", "timeout", &WorkerCounters::proxy_protocol_timeouts},
};

class Builder {
 public:
  // A new family (or the last one again when the name repeats, for the table rows).
  MetricFamily& family(std::string_view name, std::string_view help, MetricType type) {
    if (!families_.empty() && families_.back().name == name) return families_.back();
    families_.push_back({std::string(name), std::string(help), type, {}});
    return families_.back();
  }
  static ClientMetric& add(MetricFamily& f, std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
    ClientMetric& m = f.metric.emplace_back();
    m.label.reserve(labels.size());
    for (const auto& [k, v] : labels) m.label.push_back({std::string(k), std::string(v)});
    return m;
  }
  static void counter(MetricFamily& f, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                      double v) {
    add(f, labels).counter.value = v;
  }
  static void gauge(MetricFamily& f, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                    double v) {
    add(f, labels).gauge.value = v;
  }
  std::string text() {
    std::vector<MetricFamily> all(std::make_move_iterator(families_.begin()), std::make_move_iterator(families_.end()));
    std::ostringstream out;
    prometheus::TextSerializer().Serialize(out, all);
    return out.str();
  }

 private:
  // A deque: the sections hold references to several families while they add to them.
  std::deque<MetricFamily> families_;
};

// The sum over workers of a histogram, as Prometheus wants it (cumulative, seconds).
struct Summed {
  uint64_t buckets[metrics::kBuckets] = {};
  uint64_t sum_us = 0;
  uint64_t count = 0;
  void add(const metrics::Histogram& h) {
    for (size_t b = 0; b < metrics::kBuckets; ++b) {
      const uint64_t n = metrics::load(h.buckets[b]);
      buckets[b] += n;
      count += n;
    }
    sum_us += metrics::load(h.sum_us);
  }
};

// A family written straight as text: the per-route and per-upstream families, thousands of
// series each. Building prometheus-cpp's ClientMetric objects for them and running its ostream
// serializer took about 220 ms a scrape at 4,000 routes (bench/RESULTS-metrics.md); this writes
// the same exposition format, byte for byte the serializer's layout, in a fraction of that.
static_assert(kOutcomeCount <= metrics::kMaxFailureKinds, "metrics/shard.h: raise kMaxFailureKinds");

class TextFamily {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  TextFamily(std::string& out, std::string_view name, std::string_view help, std::string_view type)
      : name_(name), out_(out) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ");
    out_.append(type).append("\n");
  }
  void sample(std::string_view suffix, Labels labels, uint64_t v) {
    open(suffix, labels);
    close(v);
  }
  void sample(std::string_view suffix, Labels labels, int64_t v) {
    open(suffix, labels);
    out_.append("} ");
    number(v);
    out_.push_back('\n');
  }
  void histogram(Labels labels, const Summed& s) {
    uint64_t cumulative = 0;
    for (size_t b = 0; b < metrics::kBuckets; ++b) {
      cumulative += s.buckets[b];
      open("_bucket", labels);
      out_.append(",le=\"").append(bound_text(b)).append("\"");
      close(cumulative);
    }
    open("_sum", labels);
    out_.append("} ");
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<double>(s.sum_us) / 1e6);
    out_.append(buf, r.ptr).push_back('\n');
    open("_count", labels);
    close(s.count);
  }
 private:
  static std::string_view bound_text(size_t b) {
    static constexpr std::string_view kText[metrics::kBuckets] = {
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"};
    return kText[b];
  }
  void open(std::string_view suffix, Labels labels) {
    out_.append(name_).append(suffix);
    char sep = '{';
    for (const auto& [k, v] : labels) {
      out_.push_back(sep);
      out_.append(k).append("=\"");
      for (char c : v) {  // the exposition format's label value escapes
        if (c == '\\' || c == '"') {
          out_.push_back('\\');
          out_.push_back(c);
        } else if (c == '\n') {
          out_.append("\\n");
        } else {
          out_.push_back(c);
        }
      }
      out_.push_back('"');
      sep = ',';
    }
  }
  void close(uint64_t v) {
    out_.append("} ");
    number(v);
    out_.push_back('\n');
  }
  template <class T>
  void number(T v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
  }
  std::string_view name_;
  std::string& out_;
};

// The label value of id `id` in `space` (the overflow id past the names).
std::string_view name_of(const metrics::SeriesRegistry& reg, Space space, uint32_t id) {
  const auto& names = reg.names(space);
  return id < names.size() ? std::string_view(names[id]) : metrics::kOverflow;
}

// Ids that may hold values: every name so far, and the overflow series.
template <class F>
void each_id(const metrics::SeriesRegistry& reg, Space space, F&& f) {
  const auto n = static_cast<uint32_t>(reg.names(space).size());
  for (uint32_t id = 0; id < n; ++id) f(id, name_of(reg, space, id));
  f(reg.overflow_id(), metrics::kOverflow);
}

// The route families, one pass over the routes each (a family's lines must be contiguous), written
// straight into `out`. A route no worker served has no series.
void routes(std::string& out, const ScrapeInput& in) {
  const auto& reg = *in.registry;
  auto duration_of = [&in](uint32_t id) {
    Summed d;
    for (const auto* shard : in.shards) d.add(shard->route(id).duration);
    return d;
  };
  {
    TextFamily requests(out, "turnpike_http_requests_total",
                        "Requests answered, by route, method class (read, write, other) and status code.", "counter");
    each_id(reg, Space::route, [&](uint32_t id, std::string_view route) {
      uint64_t req[metrics::kMethodClasses][metrics::kStatusSlots] = {};
      bool any = false;
      for (const auto* shard : in.shards) {
        const metrics::RouteCells& c = shard->route(id);
        for (size_t m = 0; m < metrics::kMethodClasses; ++m) {
          for (size_t s = 0; s < metrics::kStatusSlots; ++s) {
            const uint64_t n = metrics::load(c.requests[m][s]);
            req[m][s] += n;
            any = any || n != 0;
          }
        }
      }
      if (!any) return;
      for (size_t m = 0; m < metrics::kMethodClasses; ++m) {
        for (size_t s = 0; s < metrics::kStatusSlots; ++s) {
          if (req[m][s] == 0) continue;
          requests.sample("",
                          {{"route", route},
                           {"method", metrics::to_string(static_cast<metrics::MethodClass>(m))},
                           {"code", metrics::status_label(s)}},
                          req[m][s]);
        }
      }
    });
  }
  {
    TextFamily duration(out, "turnpike_http_request_duration_seconds",
                        "Time from the request head to the end of the response, by route.", "histogram");
    each_id(reg, Space::route, [&](uint32_t id, std::string_view route) {
      const Summed d = duration_of(id);
      if (d.count != 0) duration.histogram({{"route", route}}, d);
    });
  }
  auto bytes = [&](const char* name, const char* help, uint64_t metrics::RouteCells::*cell) {
    TextFamily f(out, name, help, "counter");
    each_id(reg, Space::route, [&](uint32_t id, std::string_view route) {
      uint64_t n = 0;
      bool served = false;
      for (const auto* shard : in.shards) {
        const metrics::RouteCells& c = shard->route(id);
        n += metrics::load(c.*cell);
        for (size_t b = 0; b < metrics::kBuckets && !served; ++b) served = metrics::load(c.duration.buckets[b]) != 0;
      }
      if (served) f.sample("", {{"route", route}}, n);
    });
  };
  bytes("turnpike_http_request_body_bytes_total", "Request body bytes received from clients, by route.",
        &metrics::RouteCells::bytes_in);
  bytes("turnpike_http_response_body_bytes_total", "Response body bytes sent to clients, by route.",
        &metrics::RouteCells::bytes_out);
}

void upstreams(std::string& out, const ScrapeInput& in) {
  const auto& reg = *in.registry;
  std::string parts[4];
  TextFamily response(parts[0], "turnpike_upstream_response_duration_seconds",
                      "Time from the first attempt to the response head, by upstream.", "histogram");
  TextFamily connect(parts[1], "turnpike_upstream_connect_duration_seconds",
                     "Time to open a new connection to a node, by upstream.", "histogram");
  TextFamily failures(parts[2], "turnpike_upstream_failures_total",
                      "Failed attempts to upstream nodes, by upstream and kind (the gateway's outcome).", "counter");
  TextFamily in_flight(parts[3], "turnpike_upstream_requests_in_flight", "Requests being forwarded, by upstream.", "gauge");
  each_id(reg, Space::upstream, [&](uint32_t id, std::string_view name) {
    Summed r, c;
    uint64_t fail[metrics::kMaxFailureKinds] = {};
    int64_t flying = 0;
    bool any = false;
    for (const auto* shard : in.shards) {
      const metrics::UpstreamCells& u = shard->upstream(id);
      r.add(u.response);
      c.add(u.connect);
      for (size_t k = 0; k < kOutcomeCount; ++k) fail[k] += metrics::load(u.failures[k]);
      flying += static_cast<int64_t>(metrics::load(u.in_flight));
    }
    for (size_t k = 0; k < kOutcomeCount; ++k) any = any || fail[k] != 0;
    if (r.count == 0 && c.count == 0 && !any && flying == 0) return;
    response.histogram({{"upstream", name}}, r);
    connect.histogram({{"upstream", name}}, c);
    for (size_t k = 0; k < kOutcomeCount; ++k) {
      if (fail[k] != 0) failures.sample("", {{"upstream", name}, {"kind", kOutcomes[k].code}}, fail[k]);
    }
    in_flight.sample("", {{"upstream", name}}, flying);
  });
  for (const auto& p : parts) out.append(p);  // upstreams are few: built apart, then joined
}

// The node's state in the shared health table (upstream/health.h), as /upstreams reports it.
enum class NodeState : uint8_t {
  healthy,  // in rotation
  ejected,  // passive checks took it out, until a time
  down,     // active checks took it out (or a new node starting unhealthy)
};
constexpr size_t kNodeStates = 3;
constexpr std::string_view kNodeStateNames[kNodeStates] = {"healthy", "ejected", "down"};

NodeState node_state(const upstream::ResolvedUpstream& up, size_t n, int64_t now_ms) {
  if (!up.health || n >= up.health->nodes.size()) return NodeState::healthy;
  const upstream::NodeHealth& h = *up.health->nodes[n];
  if (h.down.load(std::memory_order_relaxed)) return NodeState::down;
  if (h.ejected_until.load(std::memory_order_relaxed) > now_ms) return NodeState::ejected;
  return NodeState::healthy;
}

// The current snapshot's nodes: their health state (one series per state, 1 for the node's) and
// the attempts under way to each. Nodes past admin.series_cap have no series of their own: the
// overflow series counts them by state, and their attempts together.
void nodes(std::string& out, const ScrapeInput& in) {
  if (!in.snapshot) return;
  const Snapshot& snap = *in.snapshot;
  const uint32_t overflow = in.registry->overflow_id();
  std::string parts[2];
  TextFamily health(parts[0], "turnpike_upstream_node_health",
                    "Upstream nodes by health state (healthy, ejected, down): 1 for the node's state; the "
                    "overflow series counts the nodes past the series cap.",
                    "gauge");
  TextFamily flying(parts[1], "turnpike_upstream_node_requests_in_flight",
                    "Attempts under way to an upstream node, by upstream and node.", "gauge");
  auto in_flight = [&](uint32_t id) {
    int64_t n = 0;
    for (const auto* shard : in.shards) n += static_cast<int64_t>(metrics::load(shard->node(id).in_flight));
    return n;
  };
  const int64_t now_ms = upstream::health_now_ms();
  uint64_t folded[kNodeStates] = {};
  bool any_folded = false;
  for (size_t u = 0; u < snap.upstreams.size() && u < snap.node_series.size(); ++u) {
    const upstream::ResolvedUpstream& up = *snap.upstreams[u];
    const std::string_view name = up.config->name;
    for (size_t n = 0; n < up.nodes.size() && n < snap.node_series[u].size(); ++n) {
      const auto state = static_cast<size_t>(node_state(up, n, now_ms));
      const uint32_t id = snap.node_series[u][n];
      if (id == overflow) {
        ++folded[state];
        any_folded = true;
        continue;
      }
      const std::string_view node = up.nodes[n].address;
      for (size_t s = 0; s < kNodeStates; ++s) {
        health.sample("", {{"upstream", name}, {"node", node}, {"state", kNodeStateNames[s]}}, uint64_t{s == state});
      }
      flying.sample("", {{"upstream", name}, {"node", node}}, in_flight(id));
    }
  }
  if (any_folded) {
    for (size_t s = 0; s < kNodeStates; ++s) {
      health.sample("", {{"upstream", metrics::kOverflow}, {"node", metrics::kOverflow}, {"state", kNodeStateNames[s]}},
                    folded[s]);
    }
    flying.sample("", {{"upstream", metrics::kOverflow}, {"node", metrics::kOverflow}}, in_flight(overflow));
  }
  for (const auto& p : parts) out.append(p);
}

void listeners_and_plugins(Builder& b, const ScrapeInput& in) {
  const auto& reg = *in.registry;
  auto& accepted = b.family("turnpike_connections_accepted_total", "Client connections accepted, by listener.",
                            MetricType::Counter);
  auto& open = b.family("turnpike_connections_open",
                        "Client connections open now, by listener and protocol (pending: not known yet).",
                        MetricType::Gauge);
  auto& established = b.family("turnpike_connections_established_total",
                               "Client connections by the protocol they came to speak (first request or HTTP/2 "
                               "preface), by listener.",
                               MetricType::Counter);
  each_id(reg, Space::listener, [&](uint32_t id, std::string_view name) {
    uint64_t n = 0;
    int64_t opened[metrics::kConnProtocols] = {};
    uint64_t settled[metrics::kConnProtocols] = {};
    for (const auto* shard : in.shards) {
      const metrics::ListenerCells& c = shard->listener(id);
      n += metrics::load(c.accepted);
      for (size_t p = 0; p < metrics::kConnProtocols; ++p) {
        opened[p] += static_cast<int64_t>(metrics::load(c.open[p]));  // per-worker -1s wrap; the sum is right
        settled[p] += metrics::load(c.established[p]);
      }
    }
    if (n == 0) return;  // (a listener that never accepted has no connection series)
    Builder::counter(accepted, {{"listener", name}}, static_cast<double>(n));
    for (size_t p = 0; p < metrics::kConnProtocols; ++p) {
      const std::string_view protocol = metrics::to_string(static_cast<metrics::ConnProtocol>(p));
      Builder::gauge(open, {{"listener", name}, {"protocol", protocol}}, static_cast<double>(opened[p]));
      if (p != static_cast<size_t>(metrics::ConnProtocol::pending)) {
        Builder::counter(established, {{"listener", name}, {"protocol", protocol}}, static_cast<double>(settled[p]));
      }
    }
  });
  auto& errors = b.family("turnpike_plugin_errors_total",
                          "Lua plugin phase calls that failed (raised, out of memory or budget, timed out), by plugin.",
                          MetricType::Counter);
  auto& cutoffs = b.family("turnpike_plugin_budget_cutoffs_total",
                           "Lua plugin calls cut off by lua.instruction_budget, by plugin.", MetricType::Counter);
  each_id(reg, Space::plugin, [&](uint32_t id, std::string_view name) {
    uint64_t e = 0, c = 0;
    for (const auto* shard : in.shards) {
      e += metrics::load(shard->plugin(id).errors);
      c += metrics::load(shard->plugin(id).budget_cutoffs);
    }
    Builder::counter(errors, {{"plugin", name}}, static_cast<double>(e));
    Builder::counter(cutoffs, {{"plugin", name}}, static_cast<double>(c));
  });
  auto& folded = b.family("turnpike_metrics_folded_names",
                          "Names of the current config without series of their own (admin.series_cap), by label.",
                          MetricType::Gauge);
  for (Space s : {Space::route, Space::upstream, Space::listener, Space::plugin, Space::node}) {
    Builder::gauge(folded, {{"label", metrics::to_string(s)}}, static_cast<double>(reg.folded(s)));
  }
}

void worker_counters(Builder& b, const ScrapeInput& in) {
  auto sum = [&](Counter WorkerCounters::*member) {
    uint64_t n = 0;
    for (const auto* c : in.counters) n += (c->*member).value();
    return static_cast<double>(n);
  };
  auto& requests = b.family("turnpike_requests_total", "Requests read from clients, all listeners.", MetricType::Counter);
  Builder::counter(requests, {}, sum(&WorkerCounters::requests));
  for (const CounterRow& row : kCounterRows) {
    auto& f = b.family(row.family, row.help, MetricType::Counter);
    if (row.label.empty()) {
      Builder::counter(f, {}, sum(row.member));
    } else {
      Builder::counter(f, {{row.label, row.value}}, sum(row.member));
    }
  }
  auto& outcomes = b.family("turnpike_gateway_responses_total",
                            "Requests the gateway answered itself, by outcome (no_route, upstream_timeout, ...).",
                            MetricType::Counter);
  for (size_t k = 0; k < kOutcomeCount; ++k) {
    uint64_t n = 0;
    for (const auto* c : in.counters) n += c->outcomes[k].value();
    Builder::counter(outcomes, {{"outcome", kOutcomes[k].code}}, static_cast<double>(n));
  }
}

// The plugins' own metrics (turnpike.metrics), with the label sets each folded into overflow.
void plugin_metrics(Builder& b, const ScrapeInput& in) {
  auto values = lua::collect_plugin_metrics(in.plugin_shards);
  for (const auto& v : values) {
    const MetricType type = v.kind == lua::PluginMetricKind::counter ? MetricType::Counter
                            : v.kind == lua::PluginMetricKind::gauge ? MetricType::Gauge
                                                                     : MetricType::Histogram;
    MetricFamily& f = b.family(v.name, v.help.empty() ? "Defined by a plugin." : v.help, type);
    for (const auto& s : v.series) {
      ClientMetric& m = f.metric.emplace_back();
      for (size_t i = 0; i < v.label_names.size(); ++i) m.label.push_back({v.label_names[i], s.label_values[i]});
      if (v.kind == lua::PluginMetricKind::counter) {
        m.counter.value = s.value;
      } else if (v.kind == lua::PluginMetricKind::gauge) {
        m.gauge.value = s.value;
      } else {
        uint64_t cumulative = 0;
        for (size_t k = 0; k < s.buckets.size(); ++k) {
          cumulative += s.buckets[k];
          m.histogram.bucket.push_back(
              {cumulative, k < v.bounds.size() ? v.bounds[k] : std::numeric_limits<double>::infinity()});
        }
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = s.sum;
      }
    }
  }
  auto& folded = b.family("turnpike_metrics_plugin_folded_total",
                          "Label sets of a plugin metric beyond its max_series, counted into its overflow series.",
                          MetricType::Counter);
  for (const auto& v : values) Builder::counter(folded, {{"metric", v.name}}, static_cast<double>(v.folded));
}

}  // namespace

void render_metrics(const ScrapeInput& in, std::string& out) {
  Builder b;
  auto& info = b.family("turnpike_build_info", "The running build: version and commit.", MetricType::Gauge);
  Builder::gauge(info, {{"version", build_version()}, {"commit", build_commit()}}, 1);
  auto& start = b.family("turnpike_start_time_seconds", "When the process started, seconds since the epoch.",
                         MetricType::Gauge);
  Builder::gauge(start, {}, in.start_time);
  auto& generation = b.family("turnpike_config_generation", "The generation of the configuration in use.",
                              MetricType::Gauge);
  Builder::gauge(generation, {}, static_cast<double>(in.generation));
  auto& reloads = b.family("turnpike_config_reloads_total", "Reload attempts, by result.", MetricType::Counter);
  Builder::counter(reloads, {{"result", "ok"}}, static_cast<double>(in.reloads_ok));
  Builder::counter(reloads, {{"result", "failed"}}, static_cast<double>(in.reloads_failed));
  auto& dns = b.family("turnpike_dns_lookups_total",
                       "DNS lookups of upstream names, by result (a failed one keeps the last addresses).",
                       MetricType::Counter);
  Builder::counter(dns, {{"result", "ok"}}, static_cast<double>(in.dns_lookups_ok));
  Builder::counter(dns, {{"result", "failed"}}, static_cast<double>(in.dns_lookups_failed));
  auto& dns_changes = b.family("turnpike_dns_node_changes_total",
                               "Snapshot swaps made because DNS answers changed an upstream's nodes.",
                               MetricType::Counter);
  Builder::counter(dns_changes, {}, static_cast<double>(in.dns_node_changes));
  auto& node_files = b.family("turnpike_node_file_updates_total",
                              "Node files read after they changed: ok (new nodes swapped in) or failed (refused, "
                              "the upstream kept its nodes).",
                              MetricType::Counter);
  Builder::counter(node_files, {{"result", "ok"}}, static_cast<double>(in.node_file_updates_ok));
  Builder::counter(node_files, {{"result", "failed"}}, static_cast<double>(in.node_file_updates_failed));
  auto& dropped = b.family("turnpike_log_lines_dropped_total", "Log lines dropped because the log writer fell behind.",
                           MetricType::Counter);
  Builder::counter(dropped, {}, static_cast<double>(in.log_lines_dropped));
  listeners_and_plugins(b, in);
  worker_counters(b, in);
  plugin_metrics(b, in);
  out.clear();
  out.append(b.text());
  routes(out, in);
  upstreams(out, in);
  nodes(out, in);
}

}  // namespace turnpike::proxy
