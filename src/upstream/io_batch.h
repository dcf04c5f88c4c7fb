// The system calls of one checker tick, made together (private to src/upstream: checker.cc).
//
// At 2,000 nodes checked every second, the checker makes a send and a recv per check, 4,000
// system calls a second, and the cost of entering and leaving the kernel is a fifth of its CPU
// (bench/RESULTS.md, 2026-12-07, seventh session). IoBatch queues a tick's sends and receives and
// makes them with one io_uring_enter; where io_uring is not available (a kernel without it, a
// seccomp filter that refuses it, kernel.io_uring_disabled, or TURNPIKE_IO_URING=off in the
// environment) it makes them one by one, with the same results.
//
// Every operation is non-blocking (MSG_DONTWAIT): it completes within the call, with what the
// socket has or -EAGAIN, so run() never waits for a peer.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace turnpike::upstream {

class IoBatch {
 public:
  IoBatch();  // tries io_uring once; see uring()
  ~IoBatch();
  IoBatch(const IoBatch&) = delete;
  IoBatch& operator=(const IoBatch&) = delete;

  // Forgets the last tick's operations (keeping the capacity).
  void clear();
  // Queues a receive of at most `capacity` bytes on `fd`, or a send of `data` (which must stay
  // valid until run() returns). Both return the operation's index.
  size_t recv(int fd, size_t capacity);
  size_t send(int fd, const char* data, size_t size);
  // Makes every queued operation.
  void run();
  // After run(): the operation's result, as the system call's (bytes, 0 for a closed peer) or
  // -errno; and, for a receive, where its bytes are.
  ssize_t result(size_t op) const { return ops_[op].result; }
  const char* data(size_t op) const;

  bool uring() const { return ring_ != nullptr; }  // false: one system call per operation
  size_t size() const { return ops_.size(); }

 private:
  struct Op {
    int fd;
    bool receive;
    const char* data;  // send: the bytes
    size_t size;       // send: their count; receive: the capacity
    size_t at;         // receive: its buffer's offset in in_
    ssize_t result;
  };
  void run_one_by_one();
  void run_uring();

  struct Ring;
  std::unique_ptr<Ring> ring_;
  std::vector<Op> ops_;
  std::vector<char> in_;  // the receives' buffers, one after another
  size_t in_used_ = 0;
};

}  // namespace turnpike::upstream
