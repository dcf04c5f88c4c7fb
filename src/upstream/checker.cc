// The process's one active health checker (checker.h): the probes' schedule on 20 ms ticks, the
// reads of kept-connection checks, and the reload of the probe set. The checks themselves are in
// check_http.cc and check_h2.cc.
#include "turnpike/upstream/checker.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <random>

#include "io_batch.h"
#include "probe.h"

namespace turnpike::upstream {

namespace {

// Checks are due on 20 ms ticks: the probes due in one tick are started by one wake-up of the
// thread (2,000 nodes every second are 50 wake-ups a second, not 2,000), and a check on a kept
// connection is read on the ticks after it was sent. (At 10 ms, waking up was ~8% of the
// checker's profile with 2,000 nodes, for precision no interval (100 ms at least) needs.)
constexpr Clock::duration kTick = std::chrono::milliseconds(20);
constexpr size_t kWheelSlots = 1024;  // 20.48 s: longer intervals go round the wheel more than once
// A check's response is received into a buffer of the tick's batch this big (read_kept receives
// the rest of a longer one itself).
constexpr size_t kReceive = 2048;
constexpr size_t kNoOp = SIZE_MAX;  // (a check being read whose receive is not in the batch)

int64_t tick_of(Clock::time_point t) { return t.time_since_epoch() / kTick; }
// The first tick at or after `t`.
int64_t tick_at_or_after(Clock::time_point t) { return (t.time_since_epoch() + kTick - Clock::duration(1)) / kTick; }
Clock::time_point tick_time(int64_t tick) { return Clock::time_point(tick * kTick); }

}  // namespace

HealthChecker::HealthChecker() : tick_timer_(ioc_), check_timer_(ioc_), wheel_(kWheelSlots) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start() {
  if (thread_.joinable()) return;
  schedule_tick();
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "tp-health");  // (bench/health.sh reads its CPU by name)
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run();
  });
}

void HealthChecker::stop() {
  if (!thread_.joinable()) return;
  ioc_.stop();
  thread_.join();
  probes_.clear();
  for (auto& slot : wheel_) slot.clear();
  reading_.clear();
}

void HealthChecker::schedule_tick() {
  tick_timer_.expires_after(std::chrono::seconds(1));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    health_registry().tick();
    schedule_tick();
  });
}

// ---- the check ticks ----

void HealthChecker::arm_checks() {
  if (checks_armed_) return;
  checks_armed_ = true;
  last_tick_ = tick_of(Clock::now());
  check_timer_.expires_at(tick_time(last_tick_ + 1));
  check_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) on_check_tick();
  });
}

void HealthChecker::on_check_tick() {
  const Clock::time_point now = Clock::now();
  const int64_t tick = tick_of(now);
  // The ticks since the last run (one, unless the thread was late), at most one round of the wheel.
  const int64_t from = std::max(last_tick_ + 1, tick - static_cast<int64_t>(kWheelSlots) + 1);
  last_tick_ = std::max(last_tick_, tick);  // (what is enqueued from here on is due after this tick)
  // The tick's system calls go together (io_batch.h): a receive for each check being read on
  // its kept connection, and a send for each check due on one (start_check queues those).
  if (!batch_) batch_ = std::make_unique<IoBatch>();
  batch_->clear();
  for (std::shared_ptr<Probe>& p : reading_) {  // (what stays pending goes back to reading_)
    const size_t op = p->stopped || p->connecting ? kNoOp : batch_->recv(p->kept_fd, kReceive);
    read_.emplace_back(std::move(p), op);
  }
  reading_.clear();
  // The checks due in those ticks.
  for (int64_t t = from; t <= tick; ++t) {
    std::vector<std::shared_ptr<Probe>>& slot = wheel_[static_cast<size_t>(t) % kWheelSlots];
    due_.swap(slot);
    for (std::shared_ptr<Probe>& p : due_) {
      if (p->stopped) continue;
      if (p->due_tick > tick) slot.push_back(std::move(p));  // a later round
      else start_check(p, now);
    }
    due_.clear();
  }
  batch_->run();
  // 1. The responses to the kept-connection checks of the earlier ticks.
  for (auto& [p, op] : read_) {
    if (p->stopped) continue;
    std::string why;
    KeptResult r;
    if (op == kNoOp) {
      r = read_kept(*p, now, why);
    } else {
      const Received got{batch_->result(op), batch_->data(op), kReceive};
      r = read_kept(*p, now, why, &got);
    }
    if (r == KeptResult::pending) reading_.push_back(std::move(p));
    else if (r == KeptResult::stale) connect_and_send(p, now);  // the node had closed it: connect again
    else finish(p, r == KeptResult::passed, why);
  }
  read_.clear();
  // 2. The requests sent on kept connections.
  for (auto& [p, op] : sending_) {
    std::string why;
    const KeptResult r = sent_kept(*p, batch_->result(op), why);
    if (r == KeptResult::pending) {
      p->deadline = now + p->checking->health->active.timeout;
      reading_.push_back(std::move(p));
    } else if (r == KeptResult::stale) {
      connect_and_send(p, now);
    } else {
      finish(p, false, why);
    }
  }
  sending_.clear();
  if (probes_.empty() && reading_.empty()) {
    // Nothing to check: the ticks stop until a reload adds probes; the stopped probes go now
    // (with their kept connections), except those of checks still running.
    checks_armed_ = false;
    for (auto& slot : wheel_) slot.clear();
    return;
  }
  check_timer_.expires_at(tick_time(last_tick_ + 1));
  check_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) on_check_tick();
  });
}

void HealthChecker::start_check(const std::shared_ptr<Probe>& p, Clock::time_point now) {
  if (p->reconnect) {
    p->reconnect = false;
    p->close_kept();
  }
  p->checking = p->spec;
  p->started = now;
  p->busy = true;
  if (p->checking->health->active.type != config::HealthCheckType::http) return check_through_reactor(p);
  if (p->kept_fd >= 0) {  // sent with the tick's batch, judged after it (on_check_tick)
    sending_.emplace_back(p, batch_->send(p->kept_fd, p->request.data(), p->request.size()));
    return;
  }
  connect_and_send(p, now);
}

void HealthChecker::connect_and_send(const std::shared_ptr<Probe>& p, Clock::time_point now) {
  std::string why;
  p->deadline = now + p->checking->health->active.timeout;
  if (connect_kept(*p, now, why) == KeptResult::failed) return finish(p, false, why);
  reading_.push_back(p);
}

void HealthChecker::check_through_reactor(std::shared_ptr<Probe> p) {
  asio::co_spawn(
      ioc_,
      [this, p = std::move(p)]() -> asio::awaitable<void> {
        std::string why;
        const bool passed = co_await check_connected(*p, *p->checking, why);
        if (!p->stopped) finish(p, passed, why);
      },
      asio::detached);
}

void HealthChecker::finish(const std::shared_ptr<Probe>& p, bool passed, const std::string& why) {
  const config::UpstreamHealthConfig& cfg = *p->checking->health;
  health_registry().record_check(*p->node, cfg, passed, why);
  // The interval runs from the check's start: a check's own time does not drift the schedule.
  const bool usable = p->node->usable(health_now_ms());
  p->busy = false;
  enqueue(p, p->started + (usable ? cfg.active.interval : cfg.active.unhealthy_interval));
  p->checking.reset();
}

void HealthChecker::enqueue(std::shared_ptr<Probe> p, Clock::time_point due) {
  p->due_tick = std::max(tick_at_or_after(due), last_tick_ + 1);
  wheel_[static_cast<size_t>(p->due_tick) % kWheelSlots].push_back(std::move(p));
  arm_checks();
}

// ---- reload ----

void HealthChecker::update(std::shared_ptr<const void> config,
                           std::vector<std::shared_ptr<const ResolvedUpstream>> upstreams) {
  asio::post(ioc_, [this, config = std::move(config), ups = std::move(upstreams)]() mutable {
    apply(std::move(config), std::move(ups));
  });
}

void HealthChecker::apply(std::shared_ptr<const void> config,
                          std::vector<std::shared_ptr<const ResolvedUpstream>> upstreams) {
  static thread_local std::minstd_rand rng{std::random_device{}()};
  config_ = config;
  std::unordered_map<const NodeHealth*, std::shared_ptr<Probe>> next;
  next.reserve(probes_.size());
  size_t started = 0;
  const Clock::time_point now = Clock::now();
  for (const auto& up : upstreams) {
    if (!up->health || up->config->health.active.type == config::HealthCheckType::none) continue;
    auto spec = std::make_shared<Spec>();
    spec->config = config;
    spec->up = up;
    spec->health = &up->config->health;
    spec->name = up->config->name;
    const auto& a = spec->health->active;
    for (size_t i = 0; i < up->nodes.size(); ++i) {
      const std::shared_ptr<NodeHealth>& node = up->health->nodes[i];
      if (next.count(node.get())) continue;  // listed twice
      const uint16_t port = a.port != 0 ? a.port : up->nodes[i].endpoint.port();
      const tcp::endpoint endpoint(up->nodes[i].endpoint.address(), port);
      std::shared_ptr<Probe> p;
      if (auto it = probes_.find(node.get()); it != probes_.end()) {
        p = std::move(it->second);  // keeps its schedule, its counts and its connection
        probes_.erase(it);
        const config::ActiveHealthConfig& was = p->spec->health->active;
        const bool same = p->endpoint == endpoint && was == a && p->host == up->nodes[i].host;
        if (!same) p->reconnect = p->reconnect || p->endpoint != endpoint || was.type != a.type;
        p->spec = spec;
        if (same) {  // (the common case of a reload: nothing to rebuild)
          next.emplace(node.get(), std::move(p));
          continue;
        }
      } else {
        p = std::make_shared<Probe>(ioc_, node);
        p->spec = spec;
        const auto interval = std::chrono::duration_cast<Clock::duration>(a.interval);
        enqueue(p, now + Clock::duration(std::uniform_int_distribution<int64_t>(0, interval.count())(rng)));
        ++started;
      }
      p->host = up->nodes[i].host;  // nodes expand from names: index the resolved ones
      p->endpoint = endpoint;
      if (a.type == config::HealthCheckType::http || a.type == config::HealthCheckType::https) {
        p->request = build_http_request(a, p->host, port);
      }
      next.emplace(node.get(), std::move(p));
    }
  }
  // Nodes gone (or no longer checked): their probes are dropped where the ticks find them next.
  for (auto& [node, p] : probes_) {
    p->stopped = true;
    if (!p->busy) p->close_kept();  // (a running check still uses its connection)
  }
  const size_t stopped = probes_.size();
  probes_ = std::move(next);
  if (started != 0 || stopped != 0) {
    spdlog::info("health checks: {} node(s) checked ({} new, {} no longer)", probes_.size(), started, stopped);
  }
}

}  // namespace turnpike::upstream
