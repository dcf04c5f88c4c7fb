// A worker's data path: what the request pipeline of one worker thread uses — its io_context,
// the snapshot it serves, buffers, request contexts, Lua plugin instances, upstream pools and
// counters. The layers above add the client connections (src/downstream/connections.h) and the
// thread with its listeners (src/server/worker.h); the pipeline sees only this part.
//
// Connections never move between workers; everything here belongs to the worker's thread. The
// main thread talks to a worker only by posting to its io_context. Hot path: nothing here takes
// a lock.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "turnpike/common/buffer_pool.h"
#include "turnpike/common/counter.h"
#include "turnpike/lua/plugin_metrics.h"
#include "turnpike/metrics/shard.h"
#include "turnpike/proxy/outcome.h"
#include "turnpike/proxy/plugins.h"
#include "turnpike/proxy/request_context.h"
#include "turnpike/proxy/snapshot.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::proxy {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// Everything a worker counts. Single writer (the worker), readable from other threads.
struct WorkerCounters {
  Counter connections_accepted;
  Counter connections_active;
  Counter connections_rejected;      // over max_connections_per_worker with nothing idle to close
  Counter idle_closed_for_limit;     // idle keepalive connections closed to admit a new one
  Counter slow_closed_for_limit;     // connections stuck in a partial request head closed to admit a new one
  Counter requests;
  Counter bad_requests;              // parse errors (4xx and close)
  Counter header_timeouts;
  Counter body_timeouts;
  Counter send_timeouts;
  Counter keepalive_timeouts;
  Counter max_requests_reached;
  Counter upstream_connect_failures;
  Counter upstream_timeouts;
  Counter upstream_bad_responses;
  Counter retries;
  Counter retry_budget_exhausted;    // retries an upstream's retry budget refused
  Counter tls_handshakes;            // completed
  Counter tls_resumed;               // of those, resumed from a ticket
  Counter tls_handshake_failures;    // failed handshakes (bad client hello, no shared cipher, ...)
  Counter tls_handshake_timeouts;
  Counter upstream_tls_failures;     // handshakes with upstreams that failed (verification, ...)
  Counter tunnels;                   // upgraded connections (WebSocket) relayed
  Counter tunnel_timeouts;           // tunnels closed for being idle
  Counter h2_upstream_connections;   // HTTP/2 upstream connections established
  Counter h2_upstream_streams;       // requests sent as HTTP/2 streams
  Counter h2_upstream_goaways;       // GOAWAY frames received from upstreams
  Counter h2_upstream_resets;        // streams the upstream reset or broke (protocol errors)
  Counter h2_upstream_lost;          // HTTP/2 upstream connections lost with streams open
  Counter h2_connections;            // HTTP/2 client connections (ALPN h2 or h2c prior knowledge)
  Counter h2_streams;                // HTTP/2 client streams that carried a request
  Counter h2_malformed;              // streams reset for RFC 9113 §8 violations (PROTOCOL_ERROR)
  Counter h2_refused_streams;        // streams refused (REFUSED_STREAM): too many in flight
  Counter h2_client_resets;          // RST_STREAM frames received from clients
  Counter h2_rapid_resets;           // connections cut off for their RST_STREAM rate (CVE-2023-44487)
  Counter h2_continuation_floods;    // cut off for too many CONTINUATION frames (CVE-2024-28182)
  Counter h2_hpack_bombs;            // cut off for a decoded header list far over the limit
  Counter h2_header_lists_too_large; // requests answered 431: header list over max_header_list_size
  Counter h2_control_floods;         // cut off for SETTINGS/PING/PRIORITY/WINDOW_UPDATE/empty DATA floods
  Counter h2_protocol_errors;        // connection errors nghttp2 detected (GOAWAY with an error)
  Counter h2_goaways;                // graceful GOAWAYs (drain, reload, limits)
  Counter h2_idle_timeouts;          // closed after http2.idle_timeout with no stream open
  Counter proxy_protocol_untrusted;  // connections closed: a PROXY listener, a source not in `trusted`
  Counter proxy_protocol_invalid;    // connections closed: no PROXY header, or a malformed one
  Counter proxy_protocol_timeouts;   // connections closed: the PROXY header did not arrive in time
  // Requests the gateway ended itself, by outcome (outcome.h; index = the Outcome's value).
  std::array<Counter, kOutcomeCount> outcomes;
};

// Every counter with its name, for the exit summary (a new counter goes here too).
inline constexpr std::pair<std::string_view, Counter WorkerCounters::*> kWorkerCounterNames[] = {
    {"connections", &WorkerCounters::connections_accepted},
    {"rejected", &WorkerCounters::connections_rejected},
    {"idle_closed_for_limit", &WorkerCounters::idle_closed_for_limit},
    {"slow_closed_for_limit", &WorkerCounters::slow_closed_for_limit},
    {"requests", &WorkerCounters::requests},
    {"bad_requests", &WorkerCounters::bad_requests},
    {"header_timeouts", &WorkerCounters::header_timeouts},
    {"body_timeouts", &WorkerCounters::body_timeouts},
    {"send_timeouts", &WorkerCounters::send_timeouts},
    {"keepalive_timeouts", &WorkerCounters::keepalive_timeouts},
    {"max_requests_reached", &WorkerCounters::max_requests_reached},
    {"upstream_connect_failures", &WorkerCounters::upstream_connect_failures},
    {"upstream_timeouts", &WorkerCounters::upstream_timeouts},
    {"upstream_bad_responses", &WorkerCounters::upstream_bad_responses},
    {"retries", &WorkerCounters::retries},
    {"retry_budget_exhausted", &WorkerCounters::retry_budget_exhausted},
    {"tls_handshakes", &WorkerCounters::tls_handshakes},
    {"tls_resumed", &WorkerCounters::tls_resumed},
    {"tls_handshake_failures", &WorkerCounters::tls_handshake_failures},
    {"tls_handshake_timeouts", &WorkerCounters::tls_handshake_timeouts},
    {"upstream_tls_failures", &WorkerCounters::upstream_tls_failures},
    {"tunnels", &WorkerCounters::tunnels},
    {"tunnel_timeouts", &WorkerCounters::tunnel_timeouts},
    {"h2_upstream_connections", &WorkerCounters::h2_upstream_connections},
    {"h2_upstream_streams", &WorkerCounters::h2_upstream_streams},
    {"h2_upstream_goaways", &WorkerCounters::h2_upstream_goaways},
    {"h2_upstream_resets", &WorkerCounters::h2_upstream_resets},
    {"h2_upstream_lost", &WorkerCounters::h2_upstream_lost},
    {"h2_connections", &WorkerCounters::h2_connections},
    {"h2_streams", &WorkerCounters::h2_streams},
    {"h2_malformed", &WorkerCounters::h2_malformed},
    {"h2_refused_streams", &WorkerCounters::h2_refused_streams},
    {"h2_client_resets", &WorkerCounters::h2_client_resets},
    {"h2_rapid_resets", &WorkerCounters::h2_rapid_resets},
    {"h2_continuation_floods", &WorkerCounters::h2_continuation_floods},
    {"h2_hpack_bombs", &WorkerCounters::h2_hpack_bombs},
    {"h2_header_lists_too_large", &WorkerCounters::h2_header_lists_too_large},
    {"h2_control_floods", &WorkerCounters::h2_control_floods},
    {"h2_protocol_errors", &WorkerCounters::h2_protocol_errors},
    {"h2_goaways", &WorkerCounters::h2_goaways},
    {"h2_idle_timeouts", &WorkerCounters::h2_idle_timeouts},
    {"proxy_protocol_untrusted", &WorkerCounters::proxy_protocol_untrusted},
    {"proxy_protocol_invalid", &WorkerCounters::proxy_protocol_invalid},
    {"proxy_protocol_timeouts", &WorkerCounters::proxy_protocol_timeouts},
};

class Worker {
 public:
  // `dicts`: the node's shared dictionaries (owned by the server, outliving the worker).
  Worker(unsigned index, std::shared_ptr<const Snapshot> snapshot, lua::SharedDicts* dicts = nullptr);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  asio::io_context& io() { return ioc_; }
  unsigned index() const { return index_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  BufferPool& buffers() { return buffers_; }
  WorkerPlugins& plugins() { return plugins_; }
  WorkerCounters& counters() { return counters_; }
  metrics::WorkerMetrics& metrics() { return metrics_; }
  const lua::PluginMetricsShard* plugin_metrics() const { return plugin_metrics_.get(); }
  lua::PluginMetricsShard* plugin_metrics() { return plugin_metrics_.get(); }
  // The pool serving `snapshot`'s upstream `upstream_index` (the request's snapshot may be older).
  upstream::UpstreamPool& pool_for(const Snapshot& snapshot, size_t upstream_index);

  RequestContext* acquire_context();
  void release_context(RequestContext* ctx);

 protected:
  // A new snapshot: an unchanged upstream keeps its pool (and its warm connections), the others
  // retire once their last request is over; the plugins adopt the snapshot's instances.
  void adopt_snapshot(std::shared_ptr<const Snapshot> snapshot);
  // Timeouts of upstream connections; retired pools with nothing in flight are freed.
  void sweep_pools(Clock::time_point now);
  // Closes every parked upstream connection (drain).
  void close_idle_pools();
  // Upstream sockets open, busy or parked.
  size_t upstream_sockets() const;
  // Gives back half of the request contexts unused since the last call; returns the bytes freed.
  size_t trim_contexts();
  // The thread is ending: frees the pools, then (once their handlers have run) the contexts and
  // the plugins, while the io_context still exists.
  void release_data_path();

 private:
  std::unique_ptr<upstream::UpstreamPool> make_pool(std::shared_ptr<const upstream::ResolvedUpstream> up);

  unsigned index_;
  asio::io_context ioc_;  // declared first: destroyed last, after everything bound to it
  std::shared_ptr<const Snapshot> snapshot_;
  // Declared before the request contexts: a context's Lua ctx table is released before the Vm.
  WorkerPlugins plugins_;
  BufferPool buffers_;
  WorkerCounters counters_;
  metrics::WorkerMetrics metrics_;  // the series /metrics exports (metrics/shard.h)
  // Plugins' own metrics (turnpike.metrics); null when metrics are off.
  std::unique_ptr<lua::PluginMetricsShard, void (*)(lua::PluginMetricsShard*)> plugin_metrics_{nullptr, nullptr};
  // Pools by upstream position in the current snapshot; retired pools wait for their last
  // in-flight request before they are freed.
  std::vector<std::unique_ptr<upstream::UpstreamPool>> pools_;
  std::vector<std::unique_ptr<upstream::UpstreamPool>> retired_pools_;
  std::vector<std::unique_ptr<RequestContext>> free_contexts_;
  size_t contexts_low_water_ = 0;  // the fewest free_contexts_ since the last trim_contexts()
};

}  // namespace turnpike::proxy
