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
#include "turnpike/proxy/request_context.h"
#include "turnpike/proxy/snapshot.h"
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
};

class DownstreamConnection;
using DownstreamHook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
using IdleHook = boost::intrusive::list_base_hook<boost::intrusive::tag<struct IdleTag>,
                                                  boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

class Worker {
 public:
  Worker(unsigned index, std::shared_ptr<const Snapshot> snapshot);
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
  WorkerCounters& counters() { return counters_; }
  bool draining() const { return draining_; }
  // Above this many connections, idle ones are parked without a coroutine (less memory per
  // idle connection, a little more CPU per request); below it they wait in their coroutine.
  static constexpr size_t kParkAbove = 256;
  bool many_connections() const { return connection_count_ > kParkAbove; }
  // The pool serving `snapshot`'s upstream `upstream_index` (the request's snapshot may be older).
  upstream::UpstreamPool& pool_for(const Snapshot& snapshot, size_t upstream_index);

  RequestContext* acquire_context();
  void release_context(RequestContext* ctx);

  void add_connection(DownstreamConnection& c);
  void connection_closed(DownstreamConnection& c);
  void mark_idle(DownstreamConnection& c);
  void mark_busy(DownstreamConnection& c);

 private:
  struct Acceptor {
    std::string name;
    tcp::acceptor acceptor;
    bool closing = false;
  };
  asio::awaitable<void> accept_loop(Acceptor* acceptor);
  void open_acceptors(std::vector<std::pair<std::string, int>> fds);
  void apply_snapshot(std::shared_ptr<const Snapshot> snapshot, std::vector<std::pair<std::string, int>> fds);
  void start_drain();
  void schedule_sweep();
  void sweep();
  void maybe_finish_drain();
  bool make_room_for_connection();

  unsigned index_;
  asio::io_context ioc_;  // declared first: destroyed last, after everything bound to it
  std::thread thread_;
  std::atomic<bool> finished_{false};
  std::shared_ptr<const Snapshot> snapshot_;
  BufferPool buffers_;
  WorkerCounters counters_;
  asio::steady_timer sweep_timer_;
  bool draining_ = false;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  boost::intrusive::list<DownstreamConnection, boost::intrusive::base_hook<DownstreamHook>,
                         boost::intrusive::constant_time_size<false>> connections_;
  boost::intrusive::list<DownstreamConnection, boost::intrusive::base_hook<IdleHook>,
                         boost::intrusive::constant_time_size<false>> idle_;  // oldest first
  size_t connection_count_ = 0;
  // Pools by upstream position in the current snapshot; retired pools wait for their last
  // in-flight request before they are freed.
  std::vector<std::unique_ptr<upstream::UpstreamPool>> pools_;
  std::vector<std::unique_ptr<upstream::UpstreamPool>> retired_pools_;
  std::vector<std::unique_ptr<RequestContext>> free_contexts_;
};

}  // namespace turnpike::proxy
