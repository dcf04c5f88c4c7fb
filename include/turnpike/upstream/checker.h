// Active health checks: one checker per process, on its own thread and io_context, probing every
// node of every upstream that configures `health.active` (docs/health-checks.md).
//
// Each node has one probe: a coroutine that sleeps its interval (healthy or unhealthy), checks
// (TCP connect, or an HTTP(S) request and its status and body) and reports to the registry
// (health.h), which publishes state changes to the workers through atomics. A reload hands the
// checker the new snapshot's upstreams: probes of nodes that stay keep running on their schedule
// with the new settings, probes of removed nodes stop, new nodes get a probe whose first check
// comes at a random point of its first interval, so 2,000 new nodes do not probe at once.
// The checker also runs HealthRegistry::tick every second (ejections that end, slow starts).
#pragma once

#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

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

  boost::asio::io_context ioc_;
  std::thread thread_;
  boost::asio::steady_timer tick_timer_;
  std::shared_ptr<const void> config_;  // the config the probes' specs point into
  std::unordered_map<const NodeHealth*, std::shared_ptr<Probe>> probes_;  // the checker thread's
};

}  // namespace turnpike::upstream
