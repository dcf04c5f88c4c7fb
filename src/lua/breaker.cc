// Circuit breakers shared by the workers of the node (turnpike/lua/breaker.h), and the registry
// that finds one by name and configuration.
//
// Hot path: while closed, admission is one atomic load and one relaxed increment; while open and
// within the open time, refusal is two atomic loads. Recording an outcome takes the breaker's own
// mutex for a few counter updates (measured in tests/unit/lua/breaker_test.cc, BreakerBench). Nothing
// here allocates per request; a state change writes one warning line after the lock is released.
#include "turnpike/lua/breaker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <unordered_map>

namespace turnpike::lua {

namespace {

using Clock = Breaker::Clock;

constexpr uint64_t kStateMask = 3;

uint64_t pack(uint32_t epoch, BreakerState s) { return uint64_t{epoch} << 2 | static_cast<uint64_t>(s); }
BreakerState state_of(uint64_t word) { return static_cast<BreakerState>(word & kStateMask); }
uint32_t epoch_of(uint64_t word) { return static_cast<uint32_t>(word >> 2); }

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// failures / requests >= ratio, without a product like 0.3 * 10 = 3.0000000000000004 deciding.
bool ratio_reached(uint32_t failures, uint32_t requests, double ratio) {
  return requests > 0 && static_cast<double>(failures) >= ratio * requests - 1e-9;
}

}  // namespace

std::string_view to_string(BreakerState s) noexcept {
  switch (s) {
    case BreakerState::closed: return "closed";
    case BreakerState::open: return "open";
    case BreakerState::half_open: return "half-open";
  }
  return "?";
}

// A state change, told in the error log once the breaker's lock is released.
struct Breaker::Change {
  bool happened = false;
  BreakerState from = BreakerState::closed, to = BreakerState::closed;
  uint32_t failures = 0, requests = 0;  // the counts that decided
  uint32_t trips = 0;
  double open_for = 0;                  // to open: seconds
  const char* why = "";
};

Breaker::Breaker(std::string name, const tp_breaker_settings& settings)
    : name_(std::move(name)), settings_(settings) {}

std::string Breaker::check(const tp_breaker_settings& s) {
  auto finite = [](double v) { return std::isfinite(v); };
  if (!finite(s.window) || s.window <= 0) return "window must be a number of seconds > 0";
  if (!finite(s.min_requests) || s.min_requests < 1 || s.min_requests > 1e9) return "min_requests must be at least 1";
  if (!finite(s.failure_ratio) || s.failure_ratio <= 0 || s.failure_ratio > 1) {
    return "failure_ratio must be > 0 and <= 1";
  }
  if (!finite(s.open_duration) || s.open_duration <= 0) return "open_duration must be a number of seconds > 0";
  if (!finite(s.max_open_duration) || s.max_open_duration < s.open_duration) {
    return "max_open_duration must be at least open_duration";
  }
  if (!finite(s.backoff) || s.backoff < 1) return "backoff must be at least 1";
  if (!finite(s.half_open_requests) || s.half_open_requests < 1 || s.half_open_requests > 1e6) {
    return "half_open_requests must be from 1 to 1000000";
  }
  if (!finite(s.probe_timeout) || s.probe_timeout <= 0) return "probe_timeout must be a number of seconds > 0";
  return {};
}

void Breaker::publish_locked() {
  if (++epoch_ == 0) epoch_ = 1;  // 0 is the refused ticket
  word_.store(pack(epoch_, state_), std::memory_order_release);
}

Breaker::Change Breaker::open_locked(Clock::time_point now, const char* why) {
  Change c{true, state_, BreakerState::open};
  c.why = why;
  if (state_ == BreakerState::closed) {
    c.failures = window_failures_, c.requests = window_requests_;
  } else {
    c.failures = probe_failures_, c.requests = probes_done_;
  }
  ++trips_;
  double open_for = settings_.open_duration * std::pow(settings_.backoff, static_cast<double>(trips_ - 1));
  open_for = std::min(open_for, settings_.max_open_duration);
  c.trips = trips_, c.open_for = open_for;
  open_until_.store((now + seconds(open_for)).time_since_epoch().count(), std::memory_order_relaxed);
  state_ = BreakerState::open;
  ++opened_total_;
  publish_locked();
  return c;
}

Breaker::Change Breaker::close_locked(Clock::time_point now) {
  Change c{true, state_, BreakerState::closed};
  c.why = "the probes succeeded";
  c.failures = probe_failures_, c.requests = probes_done_;
  state_ = BreakerState::closed;
  trips_ = 0;
  window_start_ = now;
  window_requests_ = window_failures_ = 0;
  ++closed_total_;
  publish_locked();
  return c;
}

void Breaker::start_half_open_locked(Clock::time_point now) {
  state_ = BreakerState::half_open;
  round_start_ = now;
  probes_admitted_ = probes_done_ = probe_failures_ = 0;
  publish_locked();
}

void Breaker::log(const Change& c) const {
  if (!c.happened) return;
  if (c.to == BreakerState::open) {
    spdlog::warn("circuit breaker \"{}\": {} -> open, {}: {} failures of {} {} (failure_ratio {}, min_requests {}); "
                 "refusing requests for {:g}s (trip {})",
                 name_, to_string(c.from), c.why, c.failures, c.requests,
                 c.from == BreakerState::closed ? "requests in the window" : "probes", settings_.failure_ratio,
                 settings_.min_requests, c.open_for, c.trips);
  } else if (c.to == BreakerState::closed) {
    spdlog::warn("circuit breaker \"{}\": half-open -> closed, {}: {} failures of {} probes", name_, c.why, c.failures,
                 c.requests);
  } else if (c.from == BreakerState::open) {
    spdlog::warn("circuit breaker \"{}\": open -> half-open, {}: admitting {} probe(s) (trip {})", name_, c.why,
                 settings_.half_open_requests, c.trips);
  } else {
    spdlog::warn("circuit breaker \"{}\": half-open round started again, {}: {} of {} probes reported", name_, c.why,
                 c.requests, settings_.half_open_requests);
  }
}

uint32_t Breaker::allow(Clock::time_point now) {
  const uint64_t word = word_.load(std::memory_order_acquire);
  const BreakerState seen = state_of(word);
  if (seen == BreakerState::closed) {
    admitted_total_.fetch_add(1, std::memory_order_relaxed);
    return epoch_of(word);
  }
  if (seen == BreakerState::open && now.time_since_epoch().count() < open_until_.load(std::memory_order_relaxed)) {
    rejected_total_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  // Open past its time, or half-open: the probes are counted exactly, under the lock.
  Change change;
  uint32_t ticket = 0;
  {
    std::lock_guard lock(mu_);
    if (state_ == BreakerState::open && now.time_since_epoch().count() >= open_until_.load(std::memory_order_relaxed)) {
      change = Change{true, BreakerState::open, BreakerState::half_open};
      change.why = "the open time is over";
      change.trips = trips_;
      start_half_open_locked(now);
    } else if (state_ == BreakerState::half_open && now - round_start_ >= seconds(settings_.probe_timeout)) {
      // Probes admitted but never reported (their requests never reached the log phase): start a
      // new round rather than wait forever; the old round's tickets are now stale.
      change = Change{true, BreakerState::half_open, BreakerState::half_open};
      change.why = "the probes were not reported within probe_timeout";
      change.failures = probe_failures_, change.requests = probes_done_;
      start_half_open_locked(now);
    }
    if (state_ == BreakerState::closed) {
      ticket = epoch_;
    } else if (state_ == BreakerState::half_open && probes_admitted_ < settings_.half_open_requests) {
      ++probes_admitted_;
      ticket = epoch_;
    }
  }
  (ticket ? admitted_total_ : rejected_total_).fetch_add(1, std::memory_order_relaxed);
  log(change);
  return ticket;
}

void Breaker::record(uint32_t ticket, BreakerOutcome outcome, Clock::time_point now) {
  if (ticket == 0) return;
  Change change;
  {
    std::lock_guard lock(mu_);
    if (ticket != epoch_) return;  // admitted under a state that has ended
    if (outcome == BreakerOutcome::success) ++successes_total_;
    if (outcome == BreakerOutcome::failure) ++failures_total_;
    const bool failed = outcome == BreakerOutcome::failure;
    if (state_ == BreakerState::closed) {
      if (outcome == BreakerOutcome::neither) return;
      if (now - window_start_ >= seconds(settings_.window)) {
        window_start_ = now;
        window_requests_ = window_failures_ = 0;
      }
      ++window_requests_;
      if (failed) ++window_failures_;
      if (window_requests_ >= settings_.min_requests &&
          ratio_reached(window_failures_, window_requests_, settings_.failure_ratio)) {
        change = open_locked(now, "failure ratio reached");
      }
    } else if (state_ == BreakerState::half_open) {
      if (outcome == BreakerOutcome::neither) {
        // The probe told nothing (its client left first): its slot goes to the next request.
        if (probes_admitted_ > probes_done_) --probes_admitted_;
        return;
      }
      ++probes_done_;
      if (failed) ++probe_failures_;
      if (probes_done_ >= settings_.half_open_requests) {
        change = ratio_reached(probe_failures_, probes_done_, settings_.failure_ratio)
                     ? open_locked(now, "the probes failed")
                     : close_locked(now);
      }
    }
  }
  log(change);
}

tp_breaker_stats Breaker::stats(Clock::time_point now) const {
  tp_breaker_stats s{};
  std::lock_guard lock(mu_);
  s.state = static_cast<int32_t>(state_);
  s.epoch = epoch_;
  s.window_requests = window_requests_;
  s.window_failures = window_failures_;
  s.probes_admitted = probes_admitted_;
  s.probes_done = probes_done_;
  s.probe_failures = probe_failures_;
  s.trips = trips_;
  if (state_ == BreakerState::open) {
    auto left = Clock::duration(open_until_.load(std::memory_order_relaxed)) - now.time_since_epoch();
    s.open_remaining = std::max(0.0, std::chrono::duration<double>(left).count());
  }
  s.admitted_total = admitted_total_.load(std::memory_order_relaxed);
  s.rejected_total = rejected_total_.load(std::memory_order_relaxed);
  s.successes_total = successes_total_;
  s.failures_total = failures_total_;
  s.opened_total = opened_total_;
  s.closed_total = closed_total_;
  return s;
}

}  // namespace turnpike::lua

// ---- the registry and the FFI functions ---------------------------------------------------------

struct tp_breaker {
  turnpike::lua::Breaker core;
  int refs = 0;                                        // registry mutex
  turnpike::lua::Breaker::Clock::time_point released;  // when refs last fell to 0
};

namespace turnpike::lua {
namespace {

struct Registry {
  std::mutex mu;
  std::unordered_map<std::string, std::unique_ptr<tp_breaker>> breakers;  // by name, identity, settings
};

// Never destroyed: workers may release breakers while the process exits.
Registry& registry() {
  static auto* r = new Registry;
  return *r;
}

// Length-prefixed, so no choice of name and identity can collide with another.
std::string registry_key(std::string_view name, std::string_view identity, const tp_breaker_settings& s) {
  std::string key = std::to_string(name.size());
  key.append(":").append(name).append(std::to_string(identity.size())).append(":").append(identity);
  key.append(reinterpret_cast<const char*>(&s), sizeof s);
  return key;
}

void copy_error(const std::string& msg, char* err, size_t err_len) {
  if (err && err_len) std::snprintf(err, err_len, "%s", msg.c_str());
}

}  // namespace

std::vector<BreakerInfo> breaker_stats() {
  std::vector<BreakerInfo> out;
  auto now = Breaker::Clock::now();
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  for (const auto& [key, b] : r.breakers) {
    if (b->refs > 0) out.push_back({b->core.name(), b->core.stats(now)});
  }
  std::sort(out.begin(), out.end(), [](const BreakerInfo& a, const BreakerInfo& b) { return a.name < b.name; });
  return out;
}

}  // namespace turnpike::lua

using turnpike::lua::Breaker;
using turnpike::lua::BreakerOutcome;

extern "C" {

tp_breaker* tp_breaker_get(const char* name, size_t name_len, const char* identity, size_t identity_len,
                           const tp_breaker_settings* settings, char* err, size_t err_len) {
  if (!settings) {
    turnpike::lua::copy_error("no settings", err, err_len);
    return nullptr;
  }
  if (std::string why = Breaker::check(*settings); !why.empty()) {
    turnpike::lua::copy_error(why, err, err_len);
    return nullptr;
  }
  std::string_view n(name, name_len);
  std::string key = turnpike::lua::registry_key(n, {identity, identity_len}, *settings);
  auto& r = turnpike::lua::registry();
  auto now = Breaker::Clock::now();
  std::lock_guard lock(r.mu);
  // Drop the breakers nobody has used for the retention time (their conf is gone).
  std::erase_if(r.breakers, [now](const auto& kv) {
    return kv.second->refs == 0 && now - kv.second->released >= turnpike::lua::kBreakerRetention;
  });
  auto& slot = r.breakers[key];
  if (!slot) slot.reset(new tp_breaker{Breaker(std::string(n), *settings), 0, {}});
  ++slot->refs;
  return slot.get();
}

void tp_breaker_release(tp_breaker* b) {
  if (!b) return;
  auto& r = turnpike::lua::registry();
  std::lock_guard lock(r.mu);
  if (--b->refs == 0) b->released = Breaker::Clock::now();
}

uint32_t tp_breaker_allow(tp_breaker* b) { return b->core.allow(Breaker::Clock::now()); }

void tp_breaker_record(tp_breaker* b, uint32_t ticket, int outcome) {
  auto o = outcome == 1 ? BreakerOutcome::success : outcome == 2 ? BreakerOutcome::failure : BreakerOutcome::neither;
  b->core.record(ticket, o, Breaker::Clock::now());
}

void tp_breaker_read(tp_breaker* b, tp_breaker_stats* out) { *out = b->core.stats(Breaker::Clock::now()); }

namespace {
thread_local std::vector<turnpike::lua::BreakerInfo> listed;
}

int32_t tp_breaker_list(void) {
  listed = turnpike::lua::breaker_stats();
  return static_cast<int32_t>(listed.size());
}

int tp_breaker_list_entry(int32_t i, const char** name, size_t* name_len, tp_breaker_stats* out) {
  if (i < 0 || static_cast<size_t>(i) >= listed.size()) return 0;
  const auto& e = listed[static_cast<size_t>(i)];
  *name = e.name.data();
  *name_len = e.name.size();
  *out = e.stats;
  return 1;
}

}  // extern "C"
