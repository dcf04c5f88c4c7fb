// Shared dictionaries: striped locks, an LRU list per stripe, TTLs checked on access.
#include "turnpike/lua/shared_dict.h"

#include <cmath>

#include "turnpike/common/coarse_clock.h"

namespace turnpike::lua {

std::string_view to_string(SharedValue::Type t) noexcept {
  switch (t) {
    case SharedValue::Type::absent: return "absent";
    case SharedValue::Type::number: return "number";
    case SharedValue::Type::string: return "string";
    case SharedValue::Type::boolean: return "boolean";
  }
  return "unknown";
}

namespace {
// Roughly what the list node, the hash node and the Entry's own fields cost, so that a dict of
// many tiny entries is bounded too, not only one of large values.
constexpr size_t kEntryOverhead = 128;
}  // namespace

SharedDict::SharedDict(size_t capacity_bytes, size_t stripes, NowFn now)
    : stripe_capacity_(capacity_bytes / (stripes ? stripes : 1)), now_(now ? now : coarse_now) {
  stripes_.resize(stripes ? stripes : 1);
  for (auto& s : stripes_) s = std::make_unique<Stripe>();
}

size_t SharedDict::entry_bytes(std::string_view key, const SharedValue& value) noexcept {
  return kEntryOverhead + key.size() + value.text.size();
}

SharedDict::Stripe& SharedDict::stripe_for(std::string_view key) {
  // The high bits pick the stripe; the map inside uses the whole hash.
  size_t h = Hash{}(key);
  return *stripes_[(h >> 32 ^ h) % stripes_.size()];
}

SharedDict::Clock::time_point SharedDict::expiry(double ttl, Clock::time_point now) const {
  if (!(ttl > 0)) return {};
  ttl = std::fmin(ttl, 10.0 * 365 * 86400);  // keeps the conversion in range
  return now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(ttl));
}

void SharedDict::erase(Stripe& s, Lru::iterator it) {
  s.bytes -= entry_bytes(it->key, it->value);
  s.index.erase(std::string_view(it->key));
  s.lru.erase(it);
}

SharedDict::Entry* SharedDict::find_live(Stripe& s, std::string_view key, Clock::time_point now) {
  auto found = s.index.find(key);
  if (found == s.index.end()) return nullptr;
  Lru::iterator it = found->second;
  if (it->expires != Clock::time_point{} && it->expires <= now) {
    erase(s, it);
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, it);  // most recently used
  return &*it;
}

SharedDict::Store SharedDict::store(Stripe& s, std::string_view key, const SharedValue& value,
                                    double ttl, Clock::time_point now) {
  size_t need = entry_bytes(key, value);
  if (need > stripe_capacity_) return Store::too_large;
  auto found = s.index.find(key);
  if (found != s.index.end()) erase(s, found->second);
  while (s.bytes + need > stripe_capacity_ && !s.lru.empty()) {
    erase(s, std::prev(s.lru.end()));
    ++s.evictions;
  }
  s.lru.push_front(Entry{std::string(key), value, expiry(ttl, now)});
  s.index.emplace(std::string_view(s.lru.front().key), s.lru.begin());
  s.bytes += need;
  return Store::stored;
}

void SharedDict::get(std::string_view key, SharedValue& out) {
  Stripe& s = stripe_for(key);
  std::lock_guard lock(s.mutex);
  Entry* e = find_live(s, key, now_());
  if (!e) {
    out.type = SharedValue::Type::absent;
    return;
  }
  out.type = e->value.type;
  out.number = e->value.number;
  out.text = e->value.text;  // reuses out's buffer when it is large enough
}

SharedDict::Store SharedDict::set(std::string_view key, const SharedValue& value, double ttl) {
  Stripe& s = stripe_for(key);
  std::lock_guard lock(s.mutex);
  return store(s, key, value, ttl, now_());
}

SharedDict::Store SharedDict::add(std::string_view key, const SharedValue& value, double ttl) {
  Stripe& s = stripe_for(key);
  std::lock_guard lock(s.mutex);
  Clock::time_point now = now_();
  if (find_live(s, key, now)) return Store::exists;
  return store(s, key, value, ttl, now);
}

SharedDict::Incr SharedDict::incr(std::string_view key, double delta, bool has_init, double init,
                                  double ttl, double& result) {
  Stripe& s = stripe_for(key);
  std::lock_guard lock(s.mutex);
  Clock::time_point now = now_();
  Entry* e = find_live(s, key, now);
  if (!e) {
    if (!has_init) return Incr::not_found;
    SharedValue v;
    v.type = SharedValue::Type::number;
    v.number = init + delta;
    if (store(s, key, v, ttl, now) != Store::stored) return Incr::not_found;
    result = v.number;
    return Incr::done;
  }
  if (e->value.type != SharedValue::Type::number) return Incr::not_a_number;
  e->value.number += delta;  // same size: the stripe's byte count is unchanged
  result = e->value.number;
  return Incr::done;
}

void SharedDict::remove(std::string_view key) {
  Stripe& s = stripe_for(key);
  std::lock_guard lock(s.mutex);
  auto found = s.index.find(key);
  if (found != s.index.end()) erase(s, found->second);
}

size_t SharedDict::bytes_used() const {
  size_t total = 0;
  for (auto& s : stripes_) {
    std::lock_guard lock(s->mutex);
    total += s->bytes;
  }
  return total;
}

size_t SharedDict::entries() const {
  size_t total = 0;
  for (auto& s : stripes_) {
    std::lock_guard lock(s->mutex);
    total += s->lru.size();
  }
  return total;
}

size_t SharedDict::evictions() const {
  size_t total = 0;
  for (auto& s : stripes_) {
    std::lock_guard lock(s->mutex);
    total += s->evictions;
  }
  return total;
}

SharedDict& SharedDicts::add(std::string name, size_t capacity_bytes) {
  auto& slot = dicts_[std::move(name)];
  slot = std::make_unique<SharedDict>(capacity_bytes);
  return *slot;
}

SharedDict* SharedDicts::find(std::string_view name) const {
  auto it = dicts_.find(name);
  return it == dicts_.end() ? nullptr : it->second.get();
}

}  // namespace turnpike::lua
