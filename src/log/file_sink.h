// A log file that can be reopened in place, for logrotate.
//
// logrotate renames the file and sends SIGUSR1; the process must then start a fresh file under
// the old name. request_reopen() only bumps an atomic generation (so a signal handler may call
// it); each sink compares that generation with the one it opened at before every write and
// reopens then, on the logging thread, under the sink's own lock. Private to src/log/.
#pragma once

#include <spdlog/sinks/base_sink.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace turnpike::log::detail {

// Asks every ReopenableFileSink to reopen its file before its next write. Async-signal-safe.
void request_reopen() noexcept;

class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Opens `path` for appending, creating it (mode 0644) if needed. Returns nullptr and sets
  // `error` ("cannot open /x/y.log: Permission denied") when that fails.
  static std::shared_ptr<ReopenableFileSink> open(const std::string& path, std::string& error);

  ReopenableFileSink(const ReopenableFileSink&) = delete;
  ReopenableFileSink& operator=(const ReopenableFileSink&) = delete;
  ~ReopenableFileSink() override;

  const std::string& path() const { return path_; }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override {}  // every line is written with its own write(2); nothing is buffered

 private:
  ReopenableFileSink(std::string path, int fd, uint64_t generation)
      : path_(std::move(path)), fd_(fd), generation_(generation) {}
  void reopen_if_requested();

  std::string path_;
  int fd_;
  uint64_t generation_;       // the reopen generation the open fd_ belongs to
  bool reported_failure_ = false;  // one stderr line per failure streak, not one per log line
};

}  // namespace turnpike::log::detail
