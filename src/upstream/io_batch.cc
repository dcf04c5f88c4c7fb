// IoBatch: a checker tick's sends and receives in one io_uring_enter, or one by one (io_batch.h).
#include "io_batch.h"

#include <liburing.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>

namespace turnpike::upstream {

namespace {
constexpr unsigned kRingEntries = 256;  // operations submitted per io_uring_enter, at most
constexpr ssize_t kNotDone = std::numeric_limits<ssize_t>::min();
}  // namespace

struct IoBatch::Ring {
  io_uring ring{};
  ~Ring() { io_uring_queue_exit(&ring); }
};

IoBatch::IoBatch() {
  const char* env = std::getenv("TURNPIKE_IO_URING");
  if (env != nullptr && std::string_view(env) == "off") {
    spdlog::info("health checks: one system call per send and receive (TURNPIKE_IO_URING=off)");
    return;
  }
  auto r = std::make_unique<Ring>();
  const int err = io_uring_queue_init(kRingEntries, &r->ring, 0);
  if (err < 0) {
    spdlog::info("health checks: io_uring is not available ({}); one system call per send and receive",
                 std::strerror(-err));
    return;
  }
  ring_ = std::move(r);
  spdlog::info("health checks: the sends and receives of each tick go in one io_uring_enter");
}

IoBatch::~IoBatch() = default;

void IoBatch::clear() {
  ops_.clear();
  in_used_ = 0;
}

size_t IoBatch::recv(int fd, size_t capacity) {
  ops_.push_back(Op{fd, true, nullptr, capacity, in_used_, kNotDone});
  in_used_ += capacity;
  return ops_.size() - 1;
}

size_t IoBatch::send(int fd, const char* data, size_t size) {
  ops_.push_back(Op{fd, false, data, size, 0, kNotDone});
  return ops_.size() - 1;
}

const char* IoBatch::data(size_t op) const { return in_.data() + ops_[op].at; }

void IoBatch::run() {
  if (in_.size() < in_used_) in_.resize(in_used_);
  if (ring_) run_uring();
  run_one_by_one();  // what io_uring did not make (none unless it failed)
}

void IoBatch::run_one_by_one() {
  for (Op& op : ops_) {
    if (op.result != kNotDone) continue;
    ssize_t n;
    do {
      n = op.receive ? ::recv(op.fd, in_.data() + op.at, op.size, MSG_DONTWAIT)
                     : ::send(op.fd, op.data, op.size, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    op.result = n < 0 ? -errno : n;
  }
}

void IoBatch::run_uring() {
  io_uring* ring = &ring_->ring;
  size_t next = 0;
  while (next < ops_.size()) {
    unsigned queued = 0;
    for (; next < ops_.size() && queued < kRingEntries; ++next, ++queued) {
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (sqe == nullptr) break;  // (not while every chunk is reaped before the next)
      Op& op = ops_[next];
      if (op.receive) {
        io_uring_prep_recv(sqe, op.fd, in_.data() + op.at, op.size, MSG_DONTWAIT);
      } else {
        io_uring_prep_send(sqe, op.fd, op.data, op.size, MSG_DONTWAIT | MSG_NOSIGNAL);
      }
      io_uring_sqe_set_data64(sqe, next);
    }
    int submitted;
    do {
      submitted = io_uring_submit_and_wait(ring, queued);
    } while (submitted == -EINTR);
    unsigned reaped = 0;
    while (reaped < static_cast<unsigned>(submitted > 0 ? submitted : 0)) {
      io_uring_cqe* cqe = nullptr;
      int err;
      do {
        err = io_uring_wait_cqe(ring, &cqe);
      } while (err == -EINTR);
      if (err < 0) break;
      ops_[io_uring_cqe_get_data64(cqe)].result = cqe->res;
      io_uring_cqe_seen(ring, cqe);
      ++reaped;
    }
    if (queued == 0 || submitted < 0 || static_cast<unsigned>(submitted) != queued ||
        reaped != static_cast<unsigned>(submitted)) {
      // Not seen in practice. The ring goes; what it made keeps its result, a receive without a
      // result is made again below (at worst it finds nothing, and the check times out), and a
      // send without one fails as -ECANCELED: the check connects anew, so no request can go
      // twice on one connection.
      spdlog::error("health checks: io_uring failed ({}); one system call per send and receive from now on",
                    std::strerror(submitted < 0 ? -submitted : EIO));
      ring_.reset();
      for (Op& op : ops_) {
        if (op.result == kNotDone && !op.receive) op.result = -ECANCELED;
      }
      return;
    }
  }
}

}  // namespace turnpike::upstream
