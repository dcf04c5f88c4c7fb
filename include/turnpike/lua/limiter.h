// The node's rate-limit table: the counting primitive behind plugins/lib/turnpike/limit.lua
// (limit-count, limit-req, limit-conn, and users' own plugins).
//
// One table per process, shared by every worker, so a limit is exact across the workers of a
// node: each operation (window rotation, check, increment; leaky-bucket drain, check, commit)
// happens under one stripe lock, never as a read in Lua followed by a write.
//
// Memory is fixed when the table is made: `capacity_bytes / sizeof(Slot)` keys in buckets of
// kWays slots. A key is stored as a 128-bit seeded hash of (scope, key), never as its text, so
// every key costs sizeof(Slot) bytes whatever its length. A new key takes a free or expired slot
// of its bucket, else evicts the slot that expires soonest: a flood of distinct keys recycles
// slots and cannot grow the table. The pages are zero-filled by the kernel on first touch, so a
// table that holds few keys costs little resident memory.
//
// Hot path: no allocation; one hash of the key, one lock, a scan of kWays slots.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>

namespace turnpike::lua {

class Limiter {
 public:
  using Clock = std::chrono::steady_clock;
  using NowFn = Clock::time_point (*)();

  static constexpr size_t kWays = 8;       // slots per bucket (one key may use any of them)
  static constexpr size_t kStripes = 64;   // locks; bucket b is guarded by lock b % kStripes

  // A key as the table knows it: 128 bits of a hash seeded per table.
  struct Key {
    uint64_t hi = 0;
    uint64_t lo = 0;
  };

  // What an operation decided.
  struct Verdict {
    bool allowed = false;
    double remaining = 0;  // window: requests left in it; leaky: burst left; conn: slots left
    double reset = 0;      // window: seconds until it ends (or, rejected, until a request fits)
    double delay = 0;      // leaky: how long an admitted request should wait; rejected: retry after
    double count = 0;      // window: the count; leaky: the excess; conn: requests in flight
  };

  struct Stats {
    size_t capacity = 0;   // keys the table can hold
    size_t keys = 0;       // live keys (a scan of the whole table)
    size_t evictions = 0;  // live keys dropped to make room for a new one
    size_t bytes = 0;      // the table's size (slots and locks)
  };

  // `capacity_bytes` is rounded down to whole buckets (at least one). `now` is the clock the
  // windows are measured on (tests pass a fake one); `seed` 0 draws a random one.
  explicit Limiter(size_t capacity_bytes, NowFn now = nullptr, uint64_t seed = 0);
  ~Limiter();
  Limiter(const Limiter&) = delete;
  Limiter& operator=(const Limiter&) = delete;

  Key key_of(std::string_view scope, std::string_view key) const noexcept;

  // At most `limit` (cost units) per `period` seconds. Fixed: the window opens with the key's
  // first request and lasts `period`. Sliding: windows aligned to the clock, the previous
  // window's count weighted by how much of it still overlaps the last `period` seconds. A
  // rejected request is not counted.
  Verdict fixed_window(Key k, double limit, double period, double cost = 1);
  Verdict sliding_window(Key k, double limit, double period, double cost = 1);

  // Leaky bucket draining `rate` requests per second: an idle key admits at once; each request
  // adds one to the excess, which drains at `rate`; a request that would make the excess exceed
  // `burst` is rejected (and not counted); an admitted one should wait excess / rate seconds.
  Verdict leaky_bucket(Key k, double rate, double burst);

  // Requests in flight: enter admits while fewer than `max` are, leave ends one (every admitted
  // enter must be paired with exactly one leave). A key with nothing in flight is freed.
  Verdict conn_enter(Key k, double max);
  void conn_leave(Key k);

  Stats stats() const;
  static constexpr size_t slot_bytes() noexcept { return sizeof(Slot); }

 private:
  // One key's state; what `a`, `b` and `t` mean depends on the operation that owns the key
  // (scopes keep operations apart).
  struct Slot {
    uint64_t hi, lo;
    int64_t expires;  // ns on the table's clock; 0: free
    int64_t t;        // fixed: window start; sliding: current window start; leaky: last update
    double a;         // fixed/sliding: current count; leaky: excess; conn: in flight
    double b;         // sliding: previous window's count
  };
  struct alignas(64) Stripe {
    std::mutex mutex;
    size_t evictions = 0;
  };

  int64_t now_ns() const;
  // The live slot of `k`, or nullptr. Stripe lock held.
  Slot* find(Slot* bucket, Key k, int64_t now);
  // A slot for `k` (found, or claimed: free, expired, else the one expiring soonest), and
  // whether it is new. Stripe lock held.
  Slot* claim(Slot* bucket, Stripe& stripe, Key k, int64_t now, bool& fresh);
  Slot* bucket_of(Key k) const noexcept;
  Stripe& stripe_of(Key k) const noexcept;

  NowFn now_;
  uint64_t seed_;
  size_t buckets_;
  struct FreeSlots {
    void operator()(Slot* p) const noexcept;
  };
  std::unique_ptr<Slot[], FreeSlots> slots_;
  mutable std::array<Stripe, kStripes> stripes_;
};

// The process's table, made on first use with the size `configure_limit_table` last set
// (default kDefaultLimitTableBytes). The server sets it from the config before workers start;
// a later change takes effect on restart.
constexpr size_t kDefaultLimitTableBytes = size_t{16} << 20;
void configure_limit_table(size_t capacity_bytes);
Limiter& limit_table();

// The live gateway node count a cluster-wide limit is divided by (config `cluster.nodes`; a
// later issue feeds it from etcd leases). At least 1.
void set_cluster_nodes(unsigned nodes) noexcept;
unsigned cluster_nodes() noexcept;

}  // namespace turnpike::lua

// For plugins/lib/turnpike/limit.lua (ffi.C). Strings are (pointer, length).
extern "C" {
typedef struct tp_limit_out {
  double remaining, reset, delay, count;
} tp_limit_out;
typedef struct tp_limit_stats {
  double capacity, keys, evictions, bytes, slot_bytes;
} tp_limit_stats;

// 1 allowed, 0 rejected; `out` filled either way. kind: 0 fixed, 1 sliding.
int tp_limit_window(const char* scope, size_t slen, const char* key, size_t klen, int kind,
                    double limit, double period, double cost, tp_limit_out* out);
int tp_limit_leaky(const char* scope, size_t slen, const char* key, size_t klen, double rate,
                   double burst, tp_limit_out* out);
int tp_limit_conn_enter(const char* scope, size_t slen, const char* key, size_t klen, double max,
                        tp_limit_out* out);
void tp_limit_conn_leave(const char* scope, size_t slen, const char* key, size_t klen);
int tp_limit_cluster_nodes(void);
void tp_limit_stats_get(tp_limit_stats* out);
}
