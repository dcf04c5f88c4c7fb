// Per-worker recycling of fixed-size I/O buffers.
//
// A connection borrows a block only while it has bytes to hold: an idle keepalive connection
// holds none. Blocks return to a LIFO free list (warm in cache) and are never shared between
// threads: each worker owns its pool. Hot path: no lock, no allocation after warm-up.
//
// After a spike the free list would keep up to max_free blocks for good; trim(), called
// periodically, gives back the blocks that no acquire needed since the previous call, half at a
// time, so the list follows the load down to a small floor while a steady load keeps its blocks.
// The blocks it keeps are the lowest-addressed ones: those of the load before the spike, low in
// the heap, not ones from the spike's top, where each would keep pages resident that the rest of
// the spike's memory, given back, leaves free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

namespace turnpike {

class BufferPool {
 public:
  static constexpr size_t kBlockSize = 16 * 1024;
  // What trim() leaves on the free list however long the pool has been idle.
  static constexpr size_t kTrimFloor = 16;

  explicit BufferPool(size_t max_free = 1024) : max_free_(max_free) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool() {
    for (char* b : free_) delete[] b;
  }

  char* acquire() {
    if (free_.empty()) return new char[kBlockSize];
    char* b = free_.back();
    free_.pop_back();
    low_water_ = std::min(low_water_, free_.size());
    return b;
  }
  void release(char* block) {
    if (free_.size() < max_free_) {
      free_.push_back(block);
    } else {
      delete[] block;
    }
  }
  size_t free_blocks() const { return free_.size(); }

  // Frees half of the blocks (rounded up) that stayed on the free list since the last trim, the
  // highest-addressed ones, keeping kTrimFloor. Returns how many it freed.
  size_t trim() {
    const size_t unused = low_water_ > kTrimFloor ? low_water_ - kTrimFloor : 0;
    const size_t n = (unused + 1) / 2;
    if (n > 0) {
      // None of these blocks was needed for a whole trim period, so their LIFO order (which is
      // warm in cache) is worth nothing now: move the n highest to the back and free them.
      const auto keep = free_.end() - static_cast<std::ptrdiff_t>(n);
      std::nth_element(free_.begin(), keep, free_.end(), std::less<char*>());
      for (auto it = keep; it != free_.end(); ++it) delete[] *it;
      free_.erase(keep, free_.end());
    }
    low_water_ = free_.size();
    return n;
  }

 private:
  size_t max_free_;
  std::vector<char*> free_;
  size_t low_water_ = 0;  // the fewest blocks the list held since the last trim()
};

// A read buffer: bytes [begin, end) of data are unconsumed. Holds a pool block, or a larger heap
// block when a message head needs more than one block (rare; bounded by configured limits).
class IoBuffer {
 public:
  IoBuffer() = default;
  IoBuffer(const IoBuffer&) = delete;
  IoBuffer& operator=(const IoBuffer&) = delete;
  ~IoBuffer() { reset(nullptr); }

  bool has_block() const { return data_ != nullptr; }
  void ensure(BufferPool& pool) {
    if (!data_) {
      data_ = pool.acquire();
      cap_ = BufferPool::kBlockSize;
      begin_ = end_ = 0;
    }
  }
  // Gives the block back when nothing unconsumed remains in it.
  void release_if_empty(BufferPool& pool) {
    if (data_ && begin_ == end_) reset(&pool);
  }
  void reset(BufferPool* pool) {
    if (data_) {
      if (cap_ == BufferPool::kBlockSize && pool) {
        pool->release(data_);
      } else {
        delete[] data_;
      }
    }
    data_ = nullptr;
    cap_ = begin_ = end_ = 0;
  }

  void swap(IoBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(cap_, other.cap_);
    std::swap(begin_, other.begin_);
    std::swap(end_, other.end_);
  }

  char* data() { return data_ + begin_; }
  const char* data() const { return data_ + begin_; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::string_view view() const { return {data_ + begin_, end_ - begin_}; }
  void consume(size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }

  // Free space at the tail, after moving unconsumed bytes to the front if that helps.
  char* tail() { return data_ + end_; }
  size_t tail_room() const { return cap_ - end_; }
  void commit(size_t n) { end_ += n; }
  void compact() {
    if (begin_ > 0) {
      std::memmove(data_, data_ + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
  }
  // Makes room for at least `want` more bytes, growing past one block up to `limit` in total.
  // Returns false when the buffer already holds `limit` bytes.
  bool make_room(BufferPool& pool, size_t limit) {
    ensure(pool);
    if (tail_room() > 0) return true;
    compact();
    if (tail_room() > 0) return true;
    if (cap_ >= limit) return false;
    size_t ncap = cap_ * 2 < limit ? cap_ * 2 : limit;
    char* n = new char[ncap];
    std::memcpy(n, data_, end_);
    if (cap_ == BufferPool::kBlockSize) {
      pool.release(data_);
    } else {
      delete[] data_;
    }
    data_ = n;
    cap_ = ncap;
    return true;
  }

 private:
  char* data_ = nullptr;
  size_t cap_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace turnpike
