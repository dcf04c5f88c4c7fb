// A log file that can be reopened in place, for logrotate (see file_sink.h).
#include "file_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace turnpike::log::detail {

namespace {

// Lock-free on every platform we build for, so bumping it from a signal handler is safe.
std::atomic<uint64_t> g_reopen_generation{0};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

int open_append(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// O_APPEND makes each write(2) land at the end even when several processes share the file.
bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

void request_reopen() noexcept { g_reopen_generation.fetch_add(1, std::memory_order_relaxed); }

std::shared_ptr<ReopenableFileSink> ReopenableFileSink::open(const std::string& path,
                                                             std::string& error) {
  uint64_t generation = g_reopen_generation.load(std::memory_order_relaxed);
  int fd = open_append(path);
  if (fd < 0) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  return std::shared_ptr<ReopenableFileSink>(new ReopenableFileSink(path, fd, generation));
}

ReopenableFileSink::~ReopenableFileSink() {
  if (fd_ >= 0) ::close(fd_);
}

void ReopenableFileSink::reopen_if_requested() {
  uint64_t wanted = g_reopen_generation.load(std::memory_order_relaxed);
  if (wanted == generation_) return;
  generation_ = wanted;
  int fd = open_append(path_);
  if (fd < 0) {
    // Keep writing to the old (renamed) file rather than losing lines; the next reopen retries.
    std::fprintf(stderr, "turnpike: cannot reopen log file %s: %s\n", path_.c_str(),
                 std::strerror(errno));
    return;
  }
  ::close(fd_);
  fd_ = fd;
}

void ReopenableFileSink::sink_it_(const spdlog::details::log_msg& msg) {
  reopen_if_requested();
  spdlog::memory_buf_t line;
  formatter_->format(msg, line);
  if (write_all(fd_, line.data(), line.size())) {
    reported_failure_ = false;
  } else if (!reported_failure_) {
    // A full disk must not take the proxy down; say so once and keep serving.
    reported_failure_ = true;
    std::fprintf(stderr, "turnpike: cannot write log file %s: %s\n", path_.c_str(),
                 std::strerror(errno));
  }
}

}  // namespace turnpike::log::detail
