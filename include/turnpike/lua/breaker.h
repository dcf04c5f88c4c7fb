// Circuit breakers shared by every worker of the node (`require "turnpike.breaker"` in plugins;
// the bundled circuit-breaker plugin is built on it).
//
// A breaker is closed (requests pass, outcomes are counted in a fixed window), open (every request
// is refused until the open time is over) or half-open (a fixed number of probe requests pass; their
// outcomes close or reopen it). Each admitted request gets a ticket: the breaker's epoch, which
// changes with every state change, so an outcome that arrives after the state it was admitted
// under has ended is ignored (a slow request admitted while closed cannot trip a breaker that has
// since reopened, a probe of an abandoned half-open round cannot close the next one).
//
// Threading: a Breaker is used by every worker at once. Admission while closed, and refusal while
// open, read one atomic word (no lock); recording an outcome and every state change take the
// breaker's own small mutex (never a global one). The registry of named breakers takes a global
// mutex only when a plugin looks a breaker up (once per worker and conf) or releases one.
//
// The extern "C" functions at the end are what plugins/lib/turnpike/breaker.lua reaches through
// LuaJIT's FFI (ffi.C); the linker keeps and exports them (src/lua/CMakeLists.txt), and the ffi.cdef
// in breaker.lua repeats them (change both together).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

extern "C" {

// What a breaker is configured with (all durations in seconds). tp_breaker_get checks them.
typedef struct tp_breaker_settings {
  double window;              // closed: the length of a counting window (> 0)
  double min_requests;        // closed: fewer outcomes than this in a window never trip (>= 1)
  double failure_ratio;       // failures / outcomes at or above this trips (0 < r <= 1)
  double open_duration;       // open: how long requests are refused after the first trip (> 0)
  double max_open_duration;   // the cap of the open time as it grows (>= open_duration)
  double backoff;             // each consecutive trip multiplies the open time by this (>= 1)
  double half_open_requests;  // half-open: probes admitted (>= 1)
  double probe_timeout;       // a half-open round not decided within this starts over (> 0)
} tp_breaker_settings;

// One breaker's state and counters (tp_breaker_read, turnpike::lua::breaker_stats).
typedef struct tp_breaker_stats {
  int32_t state;               // 0 closed, 1 open, 2 half-open
  uint32_t epoch;              // changes with every state change
  uint32_t window_requests;    // closed: outcomes counted in the current window
  uint32_t window_failures;
  uint32_t probes_admitted;    // half-open: probes let through in the current round
  uint32_t probes_done;        // ... and their outcomes so far
  uint32_t probe_failures;
  uint32_t trips;              // consecutive trips (resets when the breaker closes)
  double open_remaining;       // open: seconds until half-open; else 0
  uint64_t admitted_total;     // requests let through, since the breaker was made
  uint64_t rejected_total;     // requests refused (open, or half-open with every probe out)
  uint64_t successes_total;
  uint64_t failures_total;
  uint64_t opened_total;       // times it opened (from closed or half-open)
  uint64_t closed_total;       // times it closed again from half-open
} tp_breaker_stats;

typedef struct tp_breaker tp_breaker;

// The node's breaker for `name` (the scope: "route:api", "upstream:backend", anything a plugin
// chooses) made with `identity` (the configuration it belongs to, in any stable text form) and
// `settings`: the existing one when a breaker with the same name, identity and settings exists
// (a reload that keeps the conf keeps its state), else a new one. Each call takes a reference that
// tp_breaker_release gives back. NULL with a message in `err` for invalid settings.
tp_breaker* tp_breaker_get(const char* name, size_t name_len, const char* identity, size_t identity_len,
                           const tp_breaker_settings* settings, char* err, size_t err_len);
void tp_breaker_release(tp_breaker* b);

// Admission of one request now: its ticket (> 0), or 0 when refused.
uint32_t tp_breaker_allow(tp_breaker* b);
// The outcome of the request admitted with `ticket`: 1 success, 2 failure, 0 neither (the request
// ended before the upstream could answer, e.g. the client left: a probe's slot is given back).
// An outcome for an epoch that has ended is ignored.
void tp_breaker_record(tp_breaker* b, uint32_t ticket, int outcome);
void tp_breaker_read(tp_breaker* b, tp_breaker_stats* out);

// Every breaker of the node, for metrics: the count, then each one's name and stats by index (an
// index past the end answers 0). The list is a copy made by tp_breaker_list, valid on this thread
// until its next call.
int32_t tp_breaker_list(void);
int tp_breaker_list_entry(int32_t i, const char** name, size_t* name_len, tp_breaker_stats* out);

}  // extern "C"

namespace turnpike::lua {

// A breaker's state. Values are tp_breaker_stats.state's.
enum class BreakerState : uint8_t {
  closed = 0,     // requests pass; outcomes counted in a fixed window
  open = 1,       // every request refused until the open time is over
  half_open = 2,  // a fixed number of probes pass; their outcomes decide
};
std::string_view to_string(BreakerState s) noexcept;

// What a request's outcome was, for the breaker.
enum class BreakerOutcome : uint8_t {
  neither = 0,  // ended before the upstream could answer (client left, a later plugin answered)
  success = 1,
  failure = 2,
};

class Breaker {
 public:
  using Clock = std::chrono::steady_clock;

  Breaker(std::string name, const tp_breaker_settings& settings);
  // The settings' problem as a message, or empty when they are valid.
  static std::string check(const tp_breaker_settings& s);

  // A ticket (> 0) for a request admitted at `now`, or 0 when refused.
  uint32_t allow(Clock::time_point now);
  void record(uint32_t ticket, BreakerOutcome outcome, Clock::time_point now);
  tp_breaker_stats stats(Clock::time_point now) const;

  const std::string& name() const { return name_; }
  const tp_breaker_settings& settings() const { return settings_; }

 private:
  struct Change;  // a state change to log once the lock is released
  // Under mu_: the moves between states.
  Change open_locked(Clock::time_point now, const char* why);
  Change close_locked(Clock::time_point now);
  void start_half_open_locked(Clock::time_point now);
  void publish_locked();
  void log(const Change& c) const;

  const std::string name_;
  const tp_breaker_settings settings_;

  // epoch << 2 | state: what lock-free admission reads.
  std::atomic<uint64_t> word_{uint64_t{1} << 2};
  std::atomic<int64_t> open_until_{0};  // open: Clock ticks when half-open may start
  std::atomic<uint64_t> admitted_total_{0};
  std::atomic<uint64_t> rejected_total_{0};

  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::closed;  // mu_ (word_ mirrors it)
  uint32_t epoch_ = 1;
  Clock::time_point window_start_{};
  uint32_t window_requests_ = 0, window_failures_ = 0;
  Clock::time_point round_start_{};
  uint32_t probes_admitted_ = 0, probes_done_ = 0, probe_failures_ = 0;
  uint32_t trips_ = 0;
  uint64_t successes_total_ = 0, failures_total_ = 0, opened_total_ = 0, closed_total_ = 0;
};

// Every breaker of the node and its stats, for the metrics endpoint.
struct BreakerInfo {
  std::string name;
  tp_breaker_stats stats;
};
std::vector<BreakerInfo> breaker_stats();

// A breaker whose last reference went away is kept this long (a reload with the same conf finds
// it again), then dropped by the next lookup.
inline constexpr std::chrono::seconds kBreakerRetention{600};

}  // namespace turnpike::lua
