// Shared dictionaries: node-wide key/value stores that every worker's plugins reach as
// `turnpike.shared.<name>` (counters for rate limits, caches, replay windows).
//
// Threading: one SharedDict is used by all worker threads at once. Keys are spread over
// independently locked stripes (no global lock); each operation holds one stripe's mutex for a
// hash lookup and a list splice. incr is atomic: read, add and write under that one lock.
// Memory: each stripe holds at most capacity/stripes bytes (keys, values and a fixed per-entry
// overhead); storing beyond that evicts the stripe's least recently used entries.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "turnpike/lua/pdk.h"

namespace turnpike::lua {

struct SharedValue {
  enum class Type : uint8_t {
    absent,   // no live value (missing or expired)
    number,
    string,
    boolean,
  };
  Type type = Type::absent;
  double number = 0;  // number, and boolean as 0/1
  std::string text;   // string
};
std::string_view to_string(SharedValue::Type t) noexcept;

class SharedDict {
 public:
  using Clock = std::chrono::steady_clock;
  using NowFn = Clock::time_point (*)();

  // How a store ended.
  enum class Store : uint8_t {
    stored,     // written (perhaps after evicting least recently used entries)
    exists,     // add: a live value is already there; nothing written
    too_large,  // the entry alone exceeds what one stripe may hold
  };
  // How an incr ended.
  enum class Incr : uint8_t {
    done,          // `result` is the new value
    not_found,     // no live value and no initial value given
    not_a_number,  // the value there is not a number
  };

  // `now` is the clock TTLs are measured on (tests pass a fake one).
  SharedDict(size_t capacity_bytes, size_t stripes = 16, NowFn now = nullptr);

  // Copies the live value of `key` into `out` (type absent when none). A hit refreshes its LRU
  // position.
  void get(std::string_view key, SharedValue& out);
  // ttl in seconds; <= 0 never expires.
  Store set(std::string_view key, const SharedValue& value, double ttl);
  Store add(std::string_view key, const SharedValue& value, double ttl);
  // Adds `delta`. A missing key starts from `init` when has_init (and gets `ttl`), else
  // not_found. An existing value keeps its expiry.
  Incr incr(std::string_view key, double delta, bool has_init, double init, double ttl,
            double& result);
  void remove(std::string_view key);

  size_t bytes_used() const;
  size_t entries() const;
  size_t evictions() const;

  // Accounted size of one entry: its key and value plus the list, map and bookkeeping.
  static size_t entry_bytes(std::string_view key, const SharedValue& value) noexcept;

 private:
  struct Entry {
    std::string key;
    SharedValue value;
    Clock::time_point expires{};  // epoch: never
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using Lru = std::list<Entry>;  // most recently used first
  struct alignas(64) Stripe {    // one cache line each: stripes do not share lines between cores
    std::mutex mutex;
    Lru lru;
    std::unordered_map<std::string_view, Lru::iterator, Hash, std::equal_to<>> index;
    size_t bytes = 0;
    size_t evictions = 0;
  };

  Stripe& stripe_for(std::string_view key);
  // The live entry for key, or nullptr (an expired one is removed on the way). Lock held.
  Entry* find_live(Stripe& s, std::string_view key, Clock::time_point now);
  void erase(Stripe& s, Lru::iterator it);
  Store store(Stripe& s, std::string_view key, const SharedValue& value, double ttl,
              Clock::time_point now);
  Clock::time_point expiry(double ttl, Clock::time_point now) const;

  size_t stripe_capacity_;
  NowFn now_;
  std::vector<std::unique_ptr<Stripe>> stripes_;
};

// The node's shared dictionaries by name, made once at start (config `shared_dicts`), then
// read-only: lookups take no lock.
class SharedDicts {
 public:
  SharedDict& add(std::string name, size_t capacity_bytes);
  SharedDict* find(std::string_view name) const;

 private:
  std::map<std::string, std::unique_ptr<SharedDict>, std::less<>> dicts_;
};

// The handle VmConfig::shared_dicts takes: the FFI side sees the set as an opaque pointer.
inline tp_shared_dicts* ffi_handle(SharedDicts& dicts) noexcept {
  return reinterpret_cast<tp_shared_dicts*>(&dicts);
}

}  // namespace turnpike::lua
