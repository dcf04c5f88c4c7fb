// Active health checks: one checker per process, on its own thread and io_context, probing every
// node of every upstream that configures `health.active` (docs/health-checks.md).
//
// Each node has one probe (src/upstream/probe.h). The checker runs on 20 ms ticks: a timer wheel
// holds the probes by the tick of their next check, so the probes due in one tick are started
// together by one wake-up of the thread; cleartext HTTP/1.1 checks, on kept connections or new
// ones, are sent and read on the following ticks with plain send and recv, a tick's together in
// one io_uring_enter where io_uring is available (no wake-up per response or per connect); the
// other checks (TCP, HTTPS, HTTP/2, gRPC) are coroutines. A result goes to the registry
// (health.h), which publishes state changes to the workers through atomics.
//
// A reload hands the checker the new snapshot's upstreams: probes of nodes that stay keep their
// schedule, counts and connection with the new settings (O(1) each), probes of removed nodes stop,
// new nodes get a probe whose first check comes at a random point of its first interval, so
// 2,000 new nodes do not probe at once. The checker also runs HealthRegistry::tick every second
// (ejections that end, slow starts).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

class IoBatch;

class HealthChecker {
 public:
  HealthChecker();
  ~HealthChecker();  // stops and joins
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  void start();
  void stop();
  // Thread-safe: the upstreams to check from now on (a snapshot's). `config` keeps their
  // config alive while probes use it.
  void update(std::shared_ptr<const void> config, std::vector<std::shared_ptr<const ResolvedUpstream>> upstreams);

  struct Probe;
  struct Spec;

 private:
  void apply(std::shared_ptr<const void> config, std::vector<std::shared_ptr<const ResolvedUpstream>> upstreams);
  void schedule_tick();
  // ---- the check ticks (checker thread) ----
  void arm_checks();                                   // starts the ticks when they are off
  void on_check_tick();
  void start_check(const std::shared_ptr<Probe>& p, Clock::time_point now);
  void check_through_reactor(std::shared_ptr<Probe> p);
  // A cleartext HTTP/1.1 check on a new connection made outside the reactor (connect_kept).
  void connect_and_send(const std::shared_ptr<Probe>& p, Clock::time_point now);
  void finish(const std::shared_ptr<Probe>& p, bool passed, const std::string& why);
  void enqueue(std::shared_ptr<Probe> p, Clock::time_point due);  // into the wheel

  boost::asio::io_context ioc_;
  std::thread thread_;
  boost::asio::steady_timer tick_timer_;   // the registry's tick, every second
  boost::asio::steady_timer check_timer_;  // the check ticks, every 20 ms while probes exist
  bool checks_armed_ = false;
  std::shared_ptr<const void> config_;  // the config the probes' specs point into
  std::unordered_map<const NodeHealth*, std::shared_ptr<Probe>> probes_;  // the checker thread's
  // The wheel: slot (tick % size) holds the probes due in that tick (or a multiple of the wheel's
  // span later: they stay for the next round).
  std::vector<std::vector<std::shared_ptr<Probe>>> wheel_;
  std::vector<std::shared_ptr<Probe>> due_;      // the slot being run (capacity reused)
  std::vector<std::shared_ptr<Probe>> reading_;  // kept-connection checks sent, not yet judged
  // One tick's system calls (src/upstream/io_batch.h), made once the tick knows them: the
  // receives of the checks being read (read_) and the sends of the checks due on kept
  // connections (sending_), each probe with its operation's index in the batch. The vectors
  // keep their capacity from tick to tick.
  std::unique_ptr<IoBatch> batch_;
  std::vector<std::pair<std::shared_ptr<Probe>, size_t>> read_;
  std::vector<std::pair<std::shared_ptr<Probe>, size_t>> sending_;
  int64_t last_tick_ = 0;                        // the last tick run
};

}  // namespace turnpike::upstream
