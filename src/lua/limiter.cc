// The node's rate-limit table (turnpike/lua/limiter.h): fixed and sliding windows, leaky
// buckets and in-flight counts, each decided in one locked step so the limit is exact across
// workers. Hot path: no allocation, one hash, one lock, a scan of one bucket.
#include "turnpike/lua/limiter.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

namespace turnpike::lua {

namespace {

constexpr double kNsPerSecond = 1e9;

// A 64-bit finalizer: every input bit affects every output bit.
inline uint64_t mix(uint64_t x) noexcept {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

// Folds `s` into the running hash `h`, 8 bytes at a time.
inline uint64_t fold(uint64_t h, std::string_view s) noexcept {
  const char* p = s.data();
  size_t n = s.size();
  h = mix(h ^ (n * 0x9e3779b97f4a7c15ULL));
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = mix(h ^ w) + 0x2545f4914f6cdd1dULL;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p, n);
  return mix(h ^ tail ^ (uint64_t{n} << 56));
}

int64_t to_ns(double seconds) noexcept {
  if (!(seconds > 0)) return 0;
  return static_cast<int64_t>(std::fmin(seconds, 10.0 * 365 * 86400) * kNsPerSecond);
}

double to_seconds(int64_t ns) noexcept { return static_cast<double>(ns) / kNsPerSecond; }

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32 | rd()) | 1;
}

}  // namespace

// ---- the table --------------------------------------------------------------------------------

Limiter::Limiter(size_t capacity_bytes, NowFn now, uint64_t seed)
    : now_(now ? now : Clock::now),
      seed_(seed ? seed : random_seed()),
      buckets_(std::max<size_t>(1, capacity_bytes / (sizeof(Slot) * kWays))) {
  // calloc of a large block is fresh zero pages from the kernel: resident only once touched.
  slots_.reset(static_cast<Slot*>(std::calloc(buckets_ * kWays, sizeof(Slot))));
  if (!slots_) throw std::bad_alloc();
}

Limiter::~Limiter() = default;

void Limiter::FreeSlots::operator()(Slot* p) const noexcept { std::free(p); }

int64_t Limiter::now_ns() const {
  // Never 0, which marks a free slot's expiry.
  return std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::nanoseconds>(now_().time_since_epoch()).count());
}

Limiter::Key Limiter::key_of(std::string_view scope, std::string_view key) const noexcept {
  uint64_t a = fold(fold(seed_, scope), key);
  uint64_t b = fold(fold(seed_ * 0x94d049bb133111ebULL + 1, scope), key);
  return {a, b};
}

Limiter::Slot* Limiter::bucket_of(Key k) const noexcept {
  // Multiply-shift maps the hash onto [0, buckets_) without a division.
  auto index = static_cast<size_t>((static_cast<unsigned __int128>(k.hi) * buckets_) >> 64);
  return slots_.get() + index * kWays;
}

Limiter::Stripe& Limiter::stripe_of(Key k) const noexcept {
  auto index = static_cast<size_t>((static_cast<unsigned __int128>(k.hi) * buckets_) >> 64);
  return stripes_[index % kStripes];
}

Limiter::Slot* Limiter::find(Slot* bucket, Key k, int64_t now) {
  for (size_t i = 0; i < kWays; ++i) {
    Slot& s = bucket[i];
    if (s.hi != k.hi || s.lo != k.lo || s.expires == 0) continue;
    if (s.expires <= now) {
      s.expires = 0;
      return nullptr;
    }
    return &s;
  }
  return nullptr;
}

Limiter::Slot* Limiter::claim(Slot* bucket, Stripe& stripe, Key k, int64_t now, bool& fresh) {
  fresh = false;
  if (Slot* s = find(bucket, k, now)) return s;
  fresh = true;
  Slot* victim = nullptr;
  for (size_t i = 0; i < kWays; ++i) {
    Slot& s = bucket[i];
    if (s.expires == 0 || s.expires <= now) {
      victim = &s;
      break;
    }
    if (!victim || s.expires < victim->expires) victim = &s;
  }
  if (victim->expires > now) ++stripe.evictions;  // a live key makes room
  *victim = Slot{k.hi, k.lo, now, 0, 0, 0};
  return victim;
}

// ---- windows ----------------------------------------------------------------------------------

Limiter::Verdict Limiter::fixed_window(Key k, double limit, double period, double cost) {
  const int64_t period_ns = std::max<int64_t>(1, to_ns(period));
  Stripe& stripe = stripe_of(k);
  std::lock_guard lock(stripe.mutex);
  const int64_t now = now_ns();
  bool fresh;
  Slot* s = claim(bucket_of(k), stripe, k, now, fresh);
  if (fresh || now - s->t >= period_ns) {  // the key's first request opens its window
    s->t = now;
    s->a = 0;
    s->expires = now + period_ns;
  }
  Verdict v;
  v.reset = to_seconds(s->t + period_ns - now);
  v.allowed = s->a + cost <= limit;
  if (v.allowed) s->a += cost;
  v.count = s->a;
  v.remaining = std::max(0.0, limit - s->a);
  return v;
}

Limiter::Verdict Limiter::sliding_window(Key k, double limit, double period, double cost) {
  const int64_t period_ns = std::max<int64_t>(1, to_ns(period));
  Stripe& stripe = stripe_of(k);
  std::lock_guard lock(stripe.mutex);
  const int64_t now = now_ns();
  const int64_t start = now - now % period_ns;  // this window, aligned to the clock
  bool fresh;
  Slot* s = claim(bucket_of(k), stripe, k, now, fresh);
  if (fresh || s->t < start - period_ns) {  // nothing counted in this or the previous window
    s->b = 0;
    s->a = 0;
  } else if (s->t < start) {  // the next window: the current one becomes the previous
    s->b = s->a;
    s->a = 0;
  }
  s->t = start;
  s->expires = start + 2 * period_ns;  // while the previous window still weighs
  const double elapsed = static_cast<double>(now - start) / static_cast<double>(period_ns);
  const double weighted = s->b * (1 - elapsed) + s->a;

  Verdict v;
  v.allowed = weighted + cost <= limit;
  if (v.allowed) s->a += cost;
  v.count = s->b * (1 - elapsed) + s->a;
  v.remaining = std::max(0.0, std::floor(limit - v.count));
  const double to_end = to_seconds(start + period_ns - now);
  if (v.allowed) {
    v.reset = to_end;
  } else if (s->a + cost <= limit && s->b > 0) {
    // The previous window's share fades enough within this window.
    const double fraction = 1 - (limit - s->a - cost) / s->b;
    v.reset = std::max(0.0, fraction * period - elapsed * period);
  } else {
    // Not before the next window, where this window's count fades in turn.
    const double fraction = s->a > 0 ? std::max(0.0, 1 - (limit - cost) / s->a) : 0;
    v.reset = to_end + fraction * period;
  }
  return v;
}

// ---- leaky bucket -----------------------------------------------------------------------------

Limiter::Verdict Limiter::leaky_bucket(Key k, double rate, double burst) {
  Stripe& stripe = stripe_of(k);
  std::lock_guard lock(stripe.mutex);
  const int64_t now = now_ns();
  bool fresh;
  Slot* s = claim(bucket_of(k), stripe, k, now, fresh);
  double excess = 0;  // an idle key admits at once
  if (!fresh) excess = std::max(0.0, s->a - rate * to_seconds(now - s->t) + 1);

  Verdict v;
  v.allowed = excess <= burst;
  if (v.allowed) {
    s->a = excess;
    s->t = now;
    // Drained when (excess + 1) / rate has passed: the key is then as good as new.
    s->expires = now + std::max<int64_t>(1, to_ns((excess + 1) / rate));
    v.delay = excess / rate;
  } else {
    v.delay = (excess - burst) / rate;  // when the request would have fit
    if (fresh) s->expires = now + 1;    // (cannot happen with burst >= 0; keep the slot sane)
  }
  v.count = v.allowed ? excess : s->a;
  v.remaining = std::max(0.0, std::floor(burst - v.count));
  v.reset = (v.count + 1) / rate;
  return v;
}

// ---- in flight --------------------------------------------------------------------------------

namespace {
// An in-flight count whose requests never left (a bug in a user's plugin) frees itself after
// this long without an enter.
constexpr int64_t kConnIdleNs = int64_t{3600} * 1'000'000'000;
}  // namespace

Limiter::Verdict Limiter::conn_enter(Key k, double max) {
  Stripe& stripe = stripe_of(k);
  std::lock_guard lock(stripe.mutex);
  const int64_t now = now_ns();
  bool fresh;
  Slot* s = claim(bucket_of(k), stripe, k, now, fresh);
  Verdict v;
  v.allowed = s->a + 1 <= max;
  if (v.allowed) s->a += 1;
  s->expires = s->a > 0 ? now + kConnIdleNs : 0;
  v.count = s->a;
  v.remaining = std::max(0.0, max - s->a);
  return v;
}

void Limiter::conn_leave(Key k) {
  Stripe& stripe = stripe_of(k);
  std::lock_guard lock(stripe.mutex);
  Slot* s = find(bucket_of(k), k, now_ns());
  if (!s) return;  // evicted meanwhile: nothing to give back
  s->a -= 1;
  if (s->a <= 0) s->expires = 0;
}

// ---- stats ------------------------------------------------------------------------------------

Limiter::Stats Limiter::stats() const {
  Stats st;
  st.capacity = buckets_ * kWays;
  st.bytes = buckets_ * kWays * sizeof(Slot) + sizeof(stripes_);
  const int64_t now = now_ns();
  for (size_t b = 0; b < buckets_; ++b) {
    Stripe& stripe = stripes_[b % kStripes];
    std::lock_guard lock(stripe.mutex);
    const Slot* bucket = slots_.get() + b * kWays;
    for (size_t i = 0; i < kWays; ++i) st.keys += bucket[i].expires > now;
  }
  for (Stripe& s : stripes_) {  // mutable: counted under their locks
    std::lock_guard lock(s.mutex);
    st.evictions += s.evictions;
  }
  return st;
}

// ---- the process's table ----------------------------------------------------------------------

namespace {
std::atomic<size_t> configured_bytes{kDefaultLimitTableBytes};
std::atomic<unsigned> live_nodes{1};
}  // namespace

void configure_limit_table(size_t capacity_bytes) { configured_bytes.store(capacity_bytes); }

Limiter& limit_table() {
  static Limiter table(configured_bytes.load());
  return table;
}

void set_cluster_nodes(unsigned nodes) noexcept { live_nodes.store(std::max(1u, nodes)); }
unsigned cluster_nodes() noexcept { return live_nodes.load(std::memory_order_relaxed); }

}  // namespace turnpike::lua

// ---- FFI --------------------------------------------------------------------------------------

namespace {
using turnpike::lua::Limiter;

Limiter::Key key(const char* scope, size_t slen, const char* k, size_t klen) {
  return turnpike::lua::limit_table().key_of({scope, slen}, {k, klen});
}

int out(const Limiter::Verdict& v, tp_limit_out* o) {
  o->remaining = v.remaining;
  o->reset = v.reset;
  o->delay = v.delay;
  o->count = v.count;
  return v.allowed ? 1 : 0;
}
}  // namespace

extern "C" {

int tp_limit_window(const char* scope, size_t slen, const char* k, size_t klen, int kind,
                    double limit, double period, double cost, tp_limit_out* o) {
  Limiter& t = turnpike::lua::limit_table();
  Limiter::Key id = key(scope, slen, k, klen);
  return out(kind == 1 ? t.sliding_window(id, limit, period, cost) : t.fixed_window(id, limit, period, cost), o);
}

int tp_limit_leaky(const char* scope, size_t slen, const char* k, size_t klen, double rate,
                   double burst, tp_limit_out* o) {
  return out(turnpike::lua::limit_table().leaky_bucket(key(scope, slen, k, klen), rate, burst), o);
}

int tp_limit_conn_enter(const char* scope, size_t slen, const char* k, size_t klen, double max,
                        tp_limit_out* o) {
  return out(turnpike::lua::limit_table().conn_enter(key(scope, slen, k, klen), max), o);
}

void tp_limit_conn_leave(const char* scope, size_t slen, const char* k, size_t klen) {
  turnpike::lua::limit_table().conn_leave(key(scope, slen, k, klen));
}

int tp_limit_cluster_nodes(void) { return static_cast<int>(turnpike::lua::cluster_nodes()); }

void tp_limit_stats_get(tp_limit_stats* o) {
  Limiter::Stats s = turnpike::lua::limit_table().stats();
  o->capacity = static_cast<double>(s.capacity);
  o->keys = static_cast<double>(s.keys);
  o->evictions = static_cast<double>(s.evictions);
  o->bytes = static_cast<double>(s.bytes);
  o->slot_bytes = static_cast<double>(Limiter::slot_bytes());
}

}  // extern "C"
