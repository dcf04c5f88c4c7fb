// A worker: one thread, one io_context, and everything its connections touch.
//
// Connections never move between workers; upstream pools, buffers and request contexts are per
// worker. The main thread talks to a worker only by posting to its io_context (apply a new
// snapshot, start draining). Hot path: nothing here takes a lock.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "turnpike/common/buffer_pool.h"
#include "turnpike/common/counter.h"
#include "turnpike/proxy/outcome.h"
#include "turnpike/proxy/request_context.h"
#include "turnpike/proxy/snapshot.h"
#include "plugins.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
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

using DownstreamHook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
using IdleHook = boost::intrusive::list_base_hook<boost::intrusive::tag<struct IdleTag>,
                                                  boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
using HeadHook = boost::intrusive::list_base_hook<boost::intrusive::tag<struct HeadTag>,
                                                  boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// The client's address as text, "ip:port" (empty if the socket has no peer); `ip_len` is the
// length of the ip part. The transport's is the one a PROXY protocol header gave, if any.
std::string peer_text(const tcp::socket& socket, size_t& ip_len);
std::string peer_text(tls::Transport& transport, size_t& ip_len);

// A client connection as the worker sees it, whatever its protocol (HTTP/1.1, HTTP/2, a TLS
// handshake in progress): listed for the deadline sweep, on the idle list while it waits between
// requests so drain and the connection limit can close it, and on the partial-head list while it
// waits for the rest of a request head, so the connection limit can close the slowest.
class ClientConnection : public DownstreamHook, public IdleHook, public HeadHook {
 public:
  virtual ~ClientConnection() = default;
  // The deadline passed: fail what the connection waits for (and count it).
  virtual void expire() = 0;
  // Drain, or the connection limit: close now if nothing is in flight (HTTP/2: GOAWAY).
  virtual void close_if_idle() = 0;
  // Many connections: an idle connection waiting in its coroutine should park instead.
  virtual void request_park() {}
  // The connection limit: close now, the rest of the request head has been awaited too long.
  virtual void close_slow() {}
  // A new snapshot was applied (HTTP/2 sends GOAWAY when its listener changed).
  virtual void snapshot_changed() {}
  Clock::time_point deadline() const { return deadline_; }
  // When the connection started waiting for the rest of a request head (on the partial-head list).
  Clock::time_point head_since() const { return head_since_; }

 protected:
  friend class Worker;  // sets head_since_ with the list
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point head_since_{};
};

class Worker {
 public:
  // `dicts`: the node's shared dictionaries (owned by the server, outliving the worker).
  Worker(unsigned index, std::shared_ptr<const Snapshot> snapshot, lua::SharedDicts* dicts = nullptr);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread. `listen_fds[i]` is this worker's SO_REUSEPORT socket for listener i.
  void start(std::vector<std::pair<std::string, int>> listen_fds);
  // Thread-safe: posts a new snapshot (and sockets for listeners it added) to the worker.
  void post_snapshot(std::shared_ptr<const Snapshot> snapshot, std::vector<std::pair<std::string, int>> new_fds);
  // Thread-safe: stop accepting, close idle connections, finish in-flight requests, then stop.
  void post_drain();
  // Thread-safe: stop now (drain timeout passed).
  void force_stop();
  void join();
  bool finished() const { return finished_.load(); }

  // ---- Used by connections on this worker's thread ----
  asio::io_context& io() { return ioc_; }
  unsigned index() const { return index_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  BufferPool& buffers() { return buffers_; }
  WorkerPlugins& plugins() { return plugins_; }
  WorkerCounters& counters() { return counters_; }
  bool draining() const { return draining_; }
  // The drain timeout ran out (force_stop): expire() calls now mean "close", not "deadline passed".
  bool stopping() const { return stopping_; }
  // Above this many connections, idle ones are parked without a coroutine (less memory per
  // idle connection, a little more CPU per request); below it they wait in their coroutine.
  static constexpr size_t kParkAbove = 256;
  bool many_connections() const { return connection_count_ > kParkAbove; }
  // The pool serving `snapshot`'s upstream `upstream_index` (the request's snapshot may be older).
  upstream::UpstreamPool& pool_for(const Snapshot& snapshot, size_t upstream_index);

  RequestContext* acquire_context();
  void release_context(RequestContext* ctx);

  void add_connection(ClientConnection& c);
  void connection_closed(ClientConnection& c);
  void mark_idle(ClientConnection& c);
  void mark_busy(ClientConnection& c);
  // A request head arrived in part and the connection waits for the rest; mark_head_read when
  // it is complete (or the wait ended). Heads that arrive whole never go on this list.
  void mark_partial_head(ClientConnection& c);
  void mark_head_read(ClientConnection& c) { c.HeadHook::unlink(); }
  // At the connection limit, a partial head waited for this long may be closed for a new client.
  static constexpr auto kSlowHeadGrace = std::chrono::seconds(1);
  // Starts serving an accepted connection on `listener`: its PROXY header first when the
  // listener wants one (proxy_accept.h), then as serve_client.
  void serve_connection(tcp::socket socket, const std::string& listener);
  // Serves a client connection (TLS handshake first when the listener has TLS). `client`: the
  // address a PROXY protocol header gave ("ip:port", `client_ip_len` its ip part), or empty.
  void serve_client(tcp::socket socket, const std::string& listener, std::string client, size_t client_ip_len);

 private:
  struct Acceptor {
    std::string name;
    tcp::acceptor acceptor;
    bool closing = false;
  };
  asio::awaitable<void> accept_loop(Acceptor* acceptor);
  // A connection just accepted: counted, and served unless the connection limit refuses it.
  void admit(tcp::socket socket, const std::string& listener);
  // Stops accepting on `acceptor`, serving what its backlog holds first (drain).
  void close_acceptor(Acceptor& acceptor);
  void open_acceptors(std::vector<std::pair<std::string, int>> fds);
  void apply_snapshot(std::shared_ptr<const Snapshot> snapshot, std::vector<std::pair<std::string, int>> fds);
  void start_drain();
  void schedule_sweep();
  void sweep();
  // After a spike: gives back what the buffer pool, the request-context list and this thread's
  // small-block cache kept but no longer use, a part per call (every kTrimEvery sweeps).
  void trim_memory();
  size_t open_sockets() const;  // client connections and upstream ones (busy or idle)
  void maybe_finish_drain();
  bool make_room_for_connection();
  std::unique_ptr<upstream::UpstreamPool> make_pool(std::shared_ptr<const upstream::ResolvedUpstream> up);

  unsigned index_;
  asio::io_context ioc_;  // declared first: destroyed last, after everything bound to it
  std::thread thread_;
  std::atomic<bool> finished_{false};
  std::shared_ptr<const Snapshot> snapshot_;
  // Declared before the request contexts: a context's Lua ctx table is released before the Vm.
  WorkerPlugins plugins_;
  BufferPool buffers_;
  WorkerCounters counters_;
  asio::steady_timer sweep_timer_;
  bool draining_ = false;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  boost::intrusive::list<ClientConnection, boost::intrusive::base_hook<DownstreamHook>,
                         boost::intrusive::constant_time_size<false>> connections_;
  boost::intrusive::list<ClientConnection, boost::intrusive::base_hook<IdleHook>,
                         boost::intrusive::constant_time_size<false>> idle_;  // oldest first
  boost::intrusive::list<ClientConnection, boost::intrusive::base_hook<HeadHook>,
                         boost::intrusive::constant_time_size<false>> partial_heads_;  // oldest first
  size_t connection_count_ = 0;
  // Pools by upstream position in the current snapshot; retired pools wait for their last
  // in-flight request before they are freed.
  std::vector<std::unique_ptr<upstream::UpstreamPool>> pools_;
  std::vector<std::unique_ptr<upstream::UpstreamPool>> retired_pools_;
  std::vector<std::unique_ptr<RequestContext>> free_contexts_;
  size_t contexts_low_water_ = 0;     // the fewest free_contexts_ since the last trim_memory()
  unsigned sweeps_since_trim_ = 0;
  size_t freed_since_malloc_trim_ = 0;  // bytes
  size_t sockets_high_water_ = 0;       // the most open sockets seen since the last malloc_trim
};

}  // namespace turnpike::proxy
