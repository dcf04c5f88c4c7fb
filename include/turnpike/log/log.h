// Error log and access log.
//
// Both are spdlog loggers writing through one background thread (asynchronous: a worker never
// waits on disk; when the queue is full the oldest queued lines are dropped and counted). File
// sinks reopen their file on reopen() (SIGUSR1, after logrotate moved it away).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "turnpike/config/config.h"
#include "turnpike/http/types.h"

namespace spdlog { class logger; }

namespace turnpike::log {

// Configures (or, on reload, reconfigures) the error log — spdlog's default logger, so
// spdlog::info() etc. write to it — and the access log. Returns false and sets `error` when a
// log file cannot be opened; the previous loggers then stay in place.
// The first call installs spdlog's default logger, which spdlog does not allow while other
// threads log: make it before starting workers. Later calls (reloads) may run at any time: they
// switch the default logger's target and level in place.
bool configure(const config::LogConfig& cfg, std::string& error);

// Reopens every file sink (SIGUSR1). Safe to call from any thread.
void reopen();

// Writes what is queued and stops the background thread (at exit, after the workers stopped).
// Later spdlog calls still reach the error log, synchronously; the access log is off.
void shutdown();

// Lines dropped because the asynchronous queue was full.
uint64_t dropped_lines();

// One upstream try of a request, for the access log.
struct UpstreamTry {
  using Clock = std::chrono::steady_clock;
  std::string_view addr;  // "127.0.0.1:9001"
  int status = 0;         // the response's status; for a try that got none, the status its failure
                          // maps to (502, 504), as nginx's $upstream_status does; 0 while under way
  // Times of the try, microseconds; -1 when it has none (header: no response head came).
  int64_t connect_us = -1;   // opening its connection; 0 on a reused one
  int64_t header_us = -1;    // from its start to its response head
  int64_t response_us = -1;  // from its start to its end (the response's last byte, or the failure)
  Clock::time_point started{};
  Clock::time_point ended{};  // when end() was called: the head came, or the try failed
};

// The upstream tries of one request, in order (nginx's $upstream_addr and $upstream_status).
// Fixed capacity, so recording a try allocates nothing; when full, the last slot is reused, so
// the final try is always the one listed last.
class UpstreamTries {
 public:
  static constexpr size_t kCapacity = 8;
  // A new try of the node at `addr` (a view that lives as long as the request's snapshot).
  void begin(std::string_view addr, UpstreamTry::Clock::time_point now = UpstreamTry::Clock::now()) {
    if (count_ < kCapacity) ++count_;
    tries_[count_ - 1] = UpstreamTry{.addr = addr, .started = now};
  }
  // The outcome of the current try: its response head came, or it failed.
  void end(int status) {
    if (count_ == 0) return;
    tries_[count_ - 1].status = status;
    tries_[count_ - 1].ended = UpstreamTry::Clock::now();
  }
  // The current try is over (after its response was relayed, or it failed). `responded`: a
  // response head came (then end() marked its time); `connect`: its new connection's connect
  // time (zero: a reused connection).
  void finish(bool responded, UpstreamTry::Clock::duration connect, UpstreamTry::Clock::time_point now) {
    if (count_ == 0) return;
    UpstreamTry& t = tries_[count_ - 1];
    using std::chrono::duration_cast, std::chrono::microseconds;
    t.connect_us = duration_cast<microseconds>(connect).count();
    if (responded && t.ended >= t.started) t.header_us = duration_cast<microseconds>(t.ended - t.started).count();
    t.response_us = duration_cast<microseconds>(now - t.started).count();
  }
  std::span<const UpstreamTry> view() const { return {tries_.data(), count_}; }
  size_t size() const { return count_; }

 private:
  std::array<UpstreamTry, kCapacity> tries_{};
  size_t count_ = 0;
};

// What the access log records about one request. Views need only live during write_access().
struct AccessRecord {
  std::string_view remote_addr;      // "127.0.0.1:51234"
  std::chrono::system_clock::time_point start;
  std::string_view method;
  std::string_view target;           // as the client sent it
  std::string_view protocol;         // "HTTP/1.1"
  std::string_view host;
  int status = 0;
  uint64_t request_bytes = 0;        // body bytes received from the client
  uint64_t response_bytes = 0;       // body bytes sent to the client
  uint64_t duration_us = 0;          // first byte of the request to last byte of the response
  std::string_view route;            // route name, empty when none matched
  std::string_view upstream_addr;    // "127.0.0.1:9001", empty when not proxied
  int upstream_status = 0;           // 0 when not proxied
  uint64_t upstream_duration_us = 0; // connect start to end of the upstream response head
  // Every try in order, when there were any: then the log lists their addresses and statuses
  // (upstream_addr and upstream_status stay the last node and the status of its response).
  std::span<const UpstreamTry> upstream_tries;
  std::string_view user_agent;
  std::string_view referer;
  std::string_view error;            // why the request failed ("upstream_timeout"), empty if not
  std::string_view consumer;         // the consumer an authentication plugin attached, if any
  std::string_view request_id;       // the request's id (request-id plugin), if any
  // For configured fields (LogConfig::access_fields) only.
  std::string_view scheme;           // "http", "https"
  std::string_view ssl_protocol;     // the client connection's TLS version, empty without TLS
  std::string_view ssl_cipher;
  std::span<const http::Header> headers;  // the request's fields ($http_<name>)
};

// True when an access log is configured; callers skip building a record otherwise.
bool access_enabled();
// Formats (text or JSON, per LogConfig::access_format) and queues one access log line.
void write_access(const AccessRecord& record);

}  // namespace turnpike::log
