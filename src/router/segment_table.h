// Internal: a flat, open-addressed hash table from (namespace, string) to a uint32 id.
//
// The router keeps every trie edge in one of these, keyed by (parent node, segment), and its
// host lookups too, keyed by (host namespace, host). Filled once at build time; find() is on the
// hot path and allocates nothing. Keys are views into storage the owner keeps alive.
//
// Lookups never insert, so a client choosing paths cannot lengthen the probe sequences: the
// longest run of occupied slots is fixed by the config at build time.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace turnpike::router::detail {

inline constexpr uint32_t kNoId = UINT32_MAX;

// A fast 64-bit string hash; reads 8 bytes at a time (segments and hosts are short).
inline uint64_t hash_key(uint32_t ns, std::string_view key) noexcept {
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  uint64_t h = (static_cast<uint64_t>(ns) << 32 | key.size()) * kMul;
  const char* p = key.data();
  size_t n = key.size();
  while (n >= 8) {
    uint64_t chunk;
    std::memcpy(&chunk, p, 8);
    h = (h ^ chunk) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t chunk = 0;
    std::memcpy(&chunk, p, n);
    h = (h ^ chunk) * kMul;
  }
  h ^= h >> 32;
  h *= kMul;
  return h ^ (h >> 29);
}

class SegmentTable {
 public:
  // Build time. Returns the id already stored for the key, or stores `id` and returns it.
  uint32_t insert(uint32_t ns, std::string_view key, uint32_t id) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    uint64_t hash = hash_key(ns, key);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.id == kNoId) {
        slot = Slot{hash, key, ns, id};
        ++size_;
        return id;
      }
      if (slot.hash == hash && slot.ns == ns && slot.key == key) return slot.id;
    }
  }

  // Hot path: the id stored for the key, or kNoId.
  uint32_t find(uint32_t ns, std::string_view key) const noexcept {
    if (size_ == 0) return kNoId;
    uint64_t hash = hash_key(ns, key);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id == kNoId) return kNoId;
      if (slot.hash == hash && slot.ns == ns && slot.key == key) return slot.id;
    }
  }

  size_t size() const noexcept { return size_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    std::string_view key;
    uint32_t ns = 0;
    uint32_t id = kNoId;  // kNoId marks an empty slot
  };

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    size_t capacity = old.empty() ? 16 : old.size() * 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    for (const Slot& slot : old) {
      if (slot.id == kNoId) continue;
      size_t i = slot.hash & mask_;
      while (slots_[i].id != kNoId) i = (i + 1) & mask_;
      slots_[i] = slot;
    }
  }

  std::vector<Slot> slots_;  // capacity is a power of two, at most half full
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace turnpike::router::detail
