// A worker thread: one thread, one io_context, its listeners (SO_REUSEPORT sockets), the periodic
// timeout sweep, memory trimming after spikes, reload and drain. What its connections and requests
// use is the DownstreamWorker it is (src/downstream/connections.h, turnpike/proxy/worker.h).
//
// The main thread talks to a worker only by posting to its io_context (apply a new snapshot,
// start draining, stop).
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "downstream/connections.h"

namespace turnpike::proxy {

class WorkerThread final : public DownstreamWorker {
 public:
  // `dicts`: the node's shared dictionaries (owned by the server, outliving the worker).
  WorkerThread(unsigned index, std::shared_ptr<const Snapshot> snapshot, lua::SharedDicts* dicts = nullptr);
  ~WorkerThread();

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
  size_t open_sockets() const { return connection_count() + upstream_sockets(); }
  void connections_drained() override { maybe_finish_drain(); }
  void maybe_finish_drain();

  std::thread thread_;
  std::atomic<bool> finished_{false};
  asio::steady_timer sweep_timer_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  unsigned sweeps_since_trim_ = 0;
  size_t freed_since_malloc_trim_ = 0;  // bytes
  size_t sockets_high_water_ = 0;       // the most open sockets seen since the last malloc_trim
};

}  // namespace turnpike::proxy
