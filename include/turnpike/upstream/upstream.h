// Upstreams as the data path sees them: resolved, immutable, shared by all workers through the
// config snapshot; and the per-worker keepalive pool that hands out connections to their nodes.
//
// Threading: a ResolvedUpstream is const and shared. An UpstreamPool and its connections belong
// to one worker thread and are never touched by another. Hot path: taking and returning a pooled
// connection is a list splice — no lock, no allocation.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/intrusive/list.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "turnpike/common/buffer_pool.h"
#include "turnpike/config/config.h"
#include "turnpike/http/chunked.h"
#include "turnpike/tls/context.h"
#include "turnpike/tls/transport.h"
#include "turnpike/common/counter.h"
#include "turnpike/upstream/balancer.h"
#include "turnpike/upstream/h2.h"
#include "turnpike/upstream/health.h"

namespace turnpike::upstream {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// One node: a configured IP literal, or one of the addresses a configured name resolved to
// (a name with three A records is three nodes, each with the configured weight, zone and tags).
struct ResolvedNode {
  tcp::endpoint endpoint;
  uint32_t weight = 1;
  std::string address;  // "127.0.0.1:9001", for logs and headers
  std::string host;     // the configured host (an SRV node: its target): TLS server name, checks' Host
};

struct ResolvedUpstream {
  const config::UpstreamConfig* config = nullptr;  // owned by the snapshot's Config, or by own_config
  // Set when the nodes were read again from the upstream's node file after the config was loaded
  // (proxy::Snapshot::with_node_file): the config with those nodes, which `config` points to.
  std::shared_ptr<const config::UpstreamConfig> own_config;
  std::vector<ResolvedNode> nodes;
  std::shared_ptr<const tls::ClientContext> tls;   // set when config->tls.enabled
  // Node tags (gray release), as sets of node indexes (bit i: nodes[i]; at most 64 nodes when
  // any is tagged, which the config enforces). Empty when no node has a tag.
  std::vector<std::pair<std::string, uint64_t>> tagged_nodes;  // tag -> the nodes carrying it
  uint64_t untagged_nodes = ~uint64_t{0};                       // the nodes without any tag
  // The nodes carrying `tag`; 0 when none does.
  uint64_t nodes_with_tag(std::string_view tag) const;
  // Node health (health.h), shared with the other snapshots that have the same nodes; null only
  // for upstreams resolved outside a snapshot.
  std::shared_ptr<const UpstreamHealth> health;
  // For the balancers: false while node i is ejected or unhealthy (a few relaxed loads; no clock
  // read while every node of the upstream is in).
  bool node_usable(size_t i) const { return !health || health->usable(i); }
  // Node i's weight for the balancers: the configured one, reduced during its slow start (>= 1).
  // With slow_start configured every weight is scaled by UpstreamHealth::kSlowStartScale (the
  // balancers use weights relative to each other).
  uint32_t node_weight(size_t i) const { return health ? health->weight(i, nodes[i].weight) : nodes[i].weight; }


  // ---- balancing (filled by resolve_upstream; see balancer.h) ----
  std::vector<uint64_t> cumulative_weight;  // prefix sums of the nodes' weights, for weighted draws
  bool equal_weights = true;                // every node has the same configured weight
  MaglevTable ring;                         // consistent_hash only
  // prefer_local_zone with a gateway zone: 1 for the nodes in it; empty when there is no preference.
  std::vector<uint8_t> local_zone;
  size_t local_nodes = 0;                   // how many nodes are in the local zone
};

// Expands every node's host into nodes: an IP literal as it is, a name (or an SRV name) into
// every address of its entry in name_table() (discovery.h), looked up now with the system
// resolver when the table has none (blocking: call it off the data path, when building a
// snapshot). A name whose latest lookup failed keeps its last good addresses; one that never
// resolved is an error naming the node's file:line.
// `local_zone` is the gateway's zone (config `zone`): with prefer_local_zone, the nodes in it are
// marked local.
// `previous`: the upstream as the running snapshot has it, when this replaces it (its nodes'
// health is found faster; HealthRegistry::attach).
bool resolve_upstream(const config::UpstreamConfig& cfg, ResolvedUpstream& out,
                      std::vector<config::ConfigError>& errors, std::string_view local_zone = {},
                      const ResolvedUpstream* previous = nullptr);
// The same nodes (addresses, weights, hosts) in the same order: a pool made for one serves the other.
bool same_nodes(const ResolvedUpstream& a, const ResolvedUpstream& b);
// The balancing tables for out.nodes (weights, Maglev table, local zone): resolve_upstream calls
// it; tests building nodes by hand call it too. `zones` are the nodes' zones (may be empty).
void index_balancing(const config::UpstreamConfig& cfg, ResolvedUpstream& out,
                     const std::vector<std::string_view>& zones, std::string_view local_zone);

// What an upstream connection is doing; the sweeper uses it to pick the timeout that applies.
enum class ConnState : uint8_t {
  connecting,  // TCP connect in progress (connect timeout)
  idle,        // parked in the pool (idle timeout)
  sending,     // writing the request (send timeout)
  receiving,   // waiting for / reading the response (read timeout)
  tunnel,      // an upgraded connection: the client side's tunnel timeout applies, not ours
  closed,      // socket closed; about to be freed
};
std::string_view to_string(ConnState s) noexcept;

// Why a node failed a request: the failures an operator is warned about (UpstreamPool::report_failure).
enum class NodeFailure : uint8_t {
  connect_failed,   // the TCP connect failed (refused, unreachable, reset)
  connect_timeout,  // no connection within connect_timeout (HTTP/2: nor the node's SETTINGS)
  tls_failed,       // connected, but the TLS handshake failed (verification, protocol, ALPN)
  timeout,          // no response, or no progress, within send_timeout / read_timeout
  closed,           // the connection closed or broke before the response was complete
  reset,            // HTTP/2: the node reset the stream (or broke the protocol in it)
  bad_response,     // the response was not valid HTTP
};
std::string_view to_string(NodeFailure f) noexcept;

// Rate limit for one node's failure warnings on one worker (no lock: per-worker state). The
// first failure is reported at once; later ones within `interval` of the last line are only
// counted, and the count goes out with the next line (or with the sweep's summary line once the
// interval is over, so a burst that then stops is still told in full).
class FailureLogLimit {
 public:
  // A failure at `now`: true when a line is to be written now. `held_back` gets the failures
  // counted since the last line (not this one), `since` the time since that line.
  bool admit(Clock::time_point now, Clock::duration interval, uint32_t& held_back, Clock::duration& since);
  // Held-back failures are waiting and the interval is over: true (with the count and the time
  // since the last line) once, for a summary line; the next failure is then reported at once.
  bool flush_due(Clock::time_point now, Clock::duration interval, uint32_t& held_back, Clock::duration& since);
  uint32_t held_back() const { return held_back_; }

 private:
  Clock::time_point last_line_{};
  bool logged_ = false;     // a line was written (last_line_ is valid)
  uint32_t held_back_ = 0;  // failures counted since the last line
};

using PoolHook = boost::intrusive::list_base_hook<boost::intrusive::tag<struct PoolTag>,
                                                  boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
using AllHook = boost::intrusive::list_base_hook<boost::intrusive::tag<struct AllTag>,
                                                 boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

class UpstreamPool;

class UpstreamConnection : public PoolHook, public AllHook {
 public:
  UpstreamConnection(asio::io_context& ioc, UpstreamPool& pool, size_t node)
      : io(tcp::socket(ioc)), pool(&pool), node(node) {}

  tls::Transport io;                // the socket, or TLS over it for https upstreams
  UpstreamPool* pool;
  size_t node;                      // index into the pool's nodes
  IoBuffer buffer;                  // response bytes; held only while a response is read
  http::ChunkedDecoder response_chunks;  // the response body's decoder (reset per response)
  ConnState state = ConnState::connecting;
  uint32_t requests = 0;            // requests sent on this connection
  bool reused = false;              // came from the pool (vs freshly connected) for this request
  bool timed_out = false;           // the sweeper cancelled an operation on it
  bool watching = false;            // an async_wait for readability is pending while idle
  uint32_t watch_generation = 0;
  Clock::time_point deadline = Clock::time_point::max();

  // Arms the timeout for the given state.
  void arm(ConnState s, Clock::time_point now);
};

class UpstreamPool {
 public:
  // `h2_counters` are used when the upstream speaks HTTP/2 (protocol h2c or h2).
  UpstreamPool(asio::io_context& ioc, BufferPool& buffers, std::shared_ptr<const ResolvedUpstream> upstream,
               const H2UpstreamCounters& h2_counters = {});
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  const ResolvedUpstream& upstream() const { return *upstream_; }
  const config::UpstreamConfig& config() const { return *upstream_->config; }
  // On reload, an unchanged upstream keeps its pool but adopts the new snapshot's object.
  void adopt(std::shared_ptr<const ResolvedUpstream> upstream) {
    upstream_ = std::move(upstream);
    node_index_.clear();  // its views were of the old object's addresses
  }
  BufferPool& buffers() { return buffers_; }
  // HTTP/2 upstreams: the multiplexed connections (null for HTTP/1.1 upstreams).
  H2UpstreamPool* h2() { return h2_.get(); }

  // The node for a request, by the upstream's balancer (balancer.h): among the usable nodes not
  // in r.tried, preferring the request's tag group and the local zone. SIZE_MAX when none is left.
  size_t pick(const PickRequest& r, Clock::time_point now);
  // The same among every node, usable or not (when all are down and are to be tried anyway).
  size_t pick_any(const PickRequest& r, Clock::time_point now);
  // Per-worker balancing state: outstanding requests and latencies (fed by the retry policy).
  Balancer& balancer() { return balancer_; }
  // Per-worker retry budget of this upstream (RetryPolicy spends it).
  RetryBudget& retry_budget() { return retry_budget_; }

  // A ready connection to `node`: a parked one (LIFO) if any, else a new one. ec is set on
  // connect failure; timed_out on the returned error tells a connect timeout from a refusal.
  struct Acquired {
    boost::system::error_code ec;
    bool timed_out = false;
    UpstreamConnection* conn = nullptr;
    bool tls_failed = false;  // connected, but the TLS handshake failed (verification, ...)
  };
  // `verify`: check a parked connection for an upstream close before handing it out (a peek;
  // for requests that are not retried on another connection when a reused one fails).
  asio::awaitable<Acquired> acquire(size_t node, bool verify = false);
  // The parked connection acquire() would return first, without suspending; conn null if none.
  Acquired take_idle(size_t node, bool verify = false);

  // A new connection to `node`, never a parked one: for the try after a reused connection failed
  // unanswered (its siblings parked at the same time may be just as dead). Errors as acquire().
  asio::awaitable<Acquired> connect(size_t node);

  // Warns (error log, level warning) that `node` failed a request, rate-limited per node on this
  // worker by FailureLogLimit with kFailureLogInterval. `ec` adds the system's reason.
  static constexpr Clock::duration kFailureLogInterval = std::chrono::seconds(10);
  void report_failure(size_t node, NodeFailure what, boost::system::error_code ec = {});
  // A response from `node` with `status`: passive health checks count it as a failure when the
  // status is configured so, and otherwise as the end of the node's failures in a row.
  void report_status(size_t node, int status);

  // Returns a connection after a response: parked for reuse when `reusable` and within limits,
  // otherwise closed and freed.
  void release(UpstreamConnection* conn, bool reusable);

  // Enforces timeouts: cancels operations past their deadline, closes idle connections past the
  // idle timeout. Called by the worker's periodic sweep.
  void sweep(Clock::time_point now);
  // Closes every parked connection (drain, or retirement after a reload).
  void close_idle();
  // A reload changed only the node list (or the health settings) of this pool's upstream:
  // `old`'s parked connections to nodes that stay (same address) move here, so a rolling
  // update does not reconnect to every node. HTTP/1.1 pools only.
  static bool same_but_nodes(const config::UpstreamConfig& a, const config::UpstreamConfig& b);
  void take_idle_from(UpstreamPool& old);
  // A retired pool (its upstream's node list changed by a reload) hands the connections its
  // requests in flight give back to `next`, the pool that now serves the upstream, when their node
  // is still in it: a rolling update then reconnects only to the nodes it adds. Null: closed as
  // before. The worker keeps it pointing at a live pool on every reload.
  void hand_over_to(UpstreamPool* next) { successor_ = next; }
  size_t active() const { return active_ + (h2_ ? h2_->active() : 0); }
  size_t idle() const;

 private:
  void destroy(UpstreamConnection* conn);
  // Looks at a parked connection, then waits for it to become readable: false when the look
  // found it closed by the upstream (it is discarded then).
  bool watch(UpstreamConnection* conn);
  // Takes a parked connection off its node's idle list and destroys it.
  void discard_idle(UpstreamConnection* conn);
  // Parks `conn` (released by a retired pool, its node's address `address`) on this pool's node
  // of that address. False when the node is gone or has its parked connections already.
  bool take_released(UpstreamConnection* conn, std::string_view address);
  // Makes `conn`, another pool's, this pool's connection to `node` (not yet parked).
  void move_in(UpstreamConnection* conn, size_t node);
  // Parks a released connection on its node's idle list, its idle timeout starting now.
  void park(UpstreamConnection* conn);
  // The node of `address`, or SIZE_MAX (an index built on first use).
  size_t node_of(std::string_view address);
  // https: the TLS handshake on a fresh connection (under the connect timeout).
  asio::awaitable<boost::system::error_code> start_tls(UpstreamConnection* conn);

  struct Node {
    ~Node();
    SSL_SESSION* tls_session = nullptr;  // https: the last resumable session, offered to new connections
    boost::intrusive::list<UpstreamConnection, boost::intrusive::base_hook<PoolHook>,
                           boost::intrusive::constant_time_size<false>> idle;
    size_t idle_count = 0;
    FailureLogLimit failure_log;
    NodeFailure last_failure = NodeFailure::connect_failed;  // the latest one held back, for the summary
    boost::system::error_code last_failure_ec;
  };
  // The sweep's summary line for failures held back on `node` once their interval is over.
  void flush_failure_log(size_t node, Clock::time_point now);

  asio::io_context& ioc_;
  BufferPool& buffers_;
  std::shared_ptr<const ResolvedUpstream> upstream_;
  std::vector<Node> nodes_;
  Balancer balancer_;
  RetryBudget retry_budget_;
  boost::intrusive::list<UpstreamConnection, boost::intrusive::base_hook<AllHook>,
                         boost::intrusive::constant_time_size<false>> all_;
  size_t active_ = 0;  // connections handed out and not yet released
  std::unique_ptr<H2UpstreamPool> h2_;
  UpstreamPool* successor_ = nullptr;                            // hand_over_to()
  std::unordered_map<std::string_view, size_t> node_index_;      // node_of(); views of upstream_'s addresses
};

}  // namespace turnpike::upstream
