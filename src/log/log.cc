// Error log and access log setup: one background thread, reconfigurable on reload.
//
// configure() opens every new sink first and only then switches over, so a reload that names an
// unwritable file changes nothing (nginx's "new cycle or the old one" rule).
//
// spdlog forbids replacing the default logger while other threads log through it, so the
// default logger is created once and never replaced while running: its only sink is a
// SwitchableSink, and a reload switches that sink's target and the logger's (atomic) level.
// The access logger is replaced on reload; access_log.cc publishes it safely.
#include "turnpike/log/log.h"

#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <optional>

#include "access_format.h"
#include "file_sink.h"
#include "syslog_sink.h"

namespace turnpike::log {

namespace {

constexpr size_t kQueueSize = 8192;
// "2026-11-23T10:00:00.123Z [info] message", always UTC.
constexpr const char* kErrorPattern = "%Y-%m-%dT%H:%M:%S.%eZ [%l] %v";

// Forwards every line to the sink configured now. Lines still queued at a reload are written by
// the new target: a handful of lines may land in the new file rather than the old one.
class SwitchableSink final : public spdlog::sinks::sink {
 public:
  explicit SwitchableSink(std::shared_ptr<spdlog::sinks::sink> target)
      : target_(std::move(target)) {}

  void log(const spdlog::details::log_msg& msg) override { target()->log(msg); }
  void flush() override { target()->flush(); }
  // Targets carry their own formatter (set when they are made); spdlog::set_pattern() and
  // friends must not override the UTC pattern.
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}

  void set_target(std::shared_ptr<spdlog::sinks::sink> target) {
    std::shared_ptr<spdlog::sinks::sink> old;  // released outside the lock
    std::lock_guard lock(mu_);
    old = std::exchange(target_, std::move(target));
  }

 private:
  // Taken by the logging thread only (and by reloads), never by workers.
  std::shared_ptr<spdlog::sinks::sink> target() {
    std::lock_guard lock(mu_);
    return target_;
  }

  std::mutex mu_;
  std::shared_ptr<spdlog::sinks::sink> target_;
};

struct State {
  std::mutex mu;  // serializes configure() and shutdown(); never taken on the logging path
  std::shared_ptr<spdlog::details::thread_pool> pool;
  std::shared_ptr<SwitchableSink> error_sink;
  std::shared_ptr<spdlog::logger> error_logger;  // the default logger while running
  uint64_t dropped_before_shutdown = 0;
};

State& state() {
  static State s;
  return s;
}

std::shared_ptr<spdlog::sinks::sink> make_sink(const std::string& target,
                                               std::string_view pattern,
                                               spdlog::pattern_time_type time_type,
                                               std::string& error) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (target == "stderr") {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else if (target == "stdout") {
    sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  } else if (detail::is_syslog_target(target)) {
    // The access log's pattern is the line alone ("%v"); the error log's time and level are
    // in syslog's header already, so it is sent as the line alone too.
    sink = detail::open_syslog_sink(target, pattern == "%v" ? "access" : "error", error);
    if (!sink) return nullptr;
    pattern = "%v";
  } else {
    sink = detail::ReopenableFileSink::open(target, error);
    if (!sink) return nullptr;
  }
  sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(std::string(pattern), time_type));
  return sink;
}

std::optional<spdlog::level::level_enum> parse_level(const std::string& s) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
      {"off", spdlog::level::off}};
  for (const auto& [name, level] : kLevels) {
    if (s == name) return level;
  }
  return std::nullopt;
}

std::shared_ptr<spdlog::logger> make_async_logger(std::string name,
                                                  std::shared_ptr<spdlog::sinks::sink> sink,
                                                  const State& st) {
  // overrun_oldest: a worker never blocks on a slow disk; the oldest queued line is dropped and
  // counted instead (dropped_lines()).
  return std::make_shared<spdlog::async_logger>(std::move(name), std::move(sink), st.pool,
                                                spdlog::async_overflow_policy::overrun_oldest);
}

}  // namespace

bool configure(const config::LogConfig& cfg, std::string& error) {
  State& st = state();
  std::lock_guard lock(st.mu);

  // Check and open everything new before touching what is installed.
  std::optional<spdlog::level::level_enum> level = parse_level(cfg.level);
  if (!level) {
    error = "unknown log level \"" + cfg.level + "\"";
    return false;
  }
  if (cfg.access_format != "text" && cfg.access_format != "json") {
    error = "unknown access log format \"" + cfg.access_format + "\"";
    return false;
  }
  auto error_target = make_sink(cfg.error_log, kErrorPattern, spdlog::pattern_time_type::utc, error);
  if (!error_target) return false;
  std::shared_ptr<spdlog::sinks::sink> access_target;
  if (cfg.access_log != "off") {
    // The access line carries its own time; the logger adds only the newline.
    access_target = make_sink(cfg.access_log, "%v", spdlog::pattern_time_type::local, error);
    if (!access_target) return false;
  }

  // Switch over.
  if (!st.pool) st.pool = std::make_shared<spdlog::details::thread_pool>(kQueueSize, 1);
  if (!st.error_logger) {
    // First configure (or the first after shutdown): done before workers start logging.
    if (!st.error_sink) st.error_sink = std::make_shared<SwitchableSink>(error_target);
    st.error_logger = make_async_logger("turnpike", st.error_sink, st);
    spdlog::set_default_logger(st.error_logger);
  }
  st.error_sink->set_target(std::move(error_target));
  st.error_logger->set_level(*level);

  std::shared_ptr<spdlog::logger> access_logger;
  if (access_target) {
    access_logger = make_async_logger("access", std::move(access_target), st);
    access_logger->set_level(spdlog::level::info);
  }
  detail::install_access_log(std::move(access_logger), cfg.access_format == "json", cfg.access_fields);
  return true;
}

void reopen() { detail::request_reopen(); }

void shutdown() {
  State& st = state();
  std::lock_guard lock(st.mu);
  if (!st.pool) return;
  detail::install_access_log(nullptr, false);
  // From now on spdlog calls reach the same sink synchronously. Like every replacement of the
  // default logger, this must not race with other threads' logging: call it after the workers
  // have stopped.
  auto sync = std::make_shared<spdlog::logger>("turnpike", st.error_sink);
  sync->set_level(st.error_logger->level());
  spdlog::set_default_logger(std::move(sync));
  st.error_logger.reset();
  st.dropped_before_shutdown += st.pool->overrun_counter();
  // The last reference: the destructor lets the thread write what is queued, then joins it.
  st.pool.reset();
}

uint64_t dropped_lines() {
  State& st = state();
  std::lock_guard lock(st.mu);
  return st.dropped_before_shutdown + (st.pool ? st.pool->overrun_counter() : 0);
}

}  // namespace turnpike::log
