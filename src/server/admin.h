// The admin listener: a small HTTP/1.1 server on the main thread's io_context, apart from the
// data path (it never runs on a worker, and a slow scrape delays no request).
//
//   GET  /metrics            Prometheus text format (metrics_export.cc)
//   GET  /healthz            200 while the process runs
//   GET  /ready              200 when ready, 503 in maintenance, while draining or starting
//   GET  /status             version, uptime, config generation, last reload and its errors
//   GET  /upstreams          every upstream's nodes and in-flight requests
//   GET  /config             the effective configuration, secrets redacted
//   POST /reload             reload the config file now; every error as JSON (409 when refused)
//   POST /maintenance/on|off enter or leave maintenance
//   POST /upgrade            start the binary on disk with our sockets (upgrade.h); 202 at once
//
// With a token configured every path but /healthz and /ready asks for "Authorization: Bearer
// <token>" (keepalived's HTTP_GET checker sends no headers). One request per connection.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "turnpike/config/config.h"

namespace turnpike::proxy {

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// What the server answers; each runs on the main thread.
struct AdminHooks {
  std::function<void(std::string& out)> metrics;  // into `out`, whose capacity is kept
  std::function<std::string()> status;
  std::function<std::string()> upstreams;
  std::function<std::string()> config;
  std::function<AdminResponse()> reload;
  std::function<AdminResponse(bool on)> maintenance;
  std::function<AdminResponse()> upgrade;
};

class AdminListener {
 public:
  AdminListener(boost::asio::io_context& io, config::AdminConfig cfg, AdminHooks hooks);
  // Binds and starts accepting, or accepts on `inherited_fd` (a socket an upgrading parent
  // passed) when it is not -1. False with `error` when the address cannot be had.
  bool start(std::string& error, int inherited_fd = -1);
  void stop();
  std::string bound() const { return bound_; }  // "127.0.0.1:9901"
  int native_handle() { return acceptor_.native_handle(); }

  // The answer to one request (exposed for unit tests).
  AdminResponse handle(std::string_view method, std::string_view path, std::string_view authorization);

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& io_;
  config::AdminConfig cfg_;
  AdminHooks hooks_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::string bound_;
  // Response bodies given back after they were sent, their capacity kept: a scrape of megabytes
  // reuses one instead of allocating (and faulting in) as much again.
  std::vector<std::string> spare_bodies_;
};

// `s` as a JSON string literal, quotes included.
std::string json_string(std::string_view s);

}  // namespace turnpike::proxy

// ---- The admin API's JSON documents (admin_api.cc) ----

namespace turnpike::metrics {
class WorkerMetrics;
}  // namespace turnpike::metrics

namespace turnpike::proxy {

struct Snapshot;

struct StatusInput {
  uint64_t generation = 0;
  double uptime_seconds = 0;
  unsigned workers = 0;
  std::string readiness;
  std::string last_reload;                       // "none", "ok" or "failed"
  std::vector<config::ConfigError> reload_errors;  // of the last reload attempt
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  std::vector<std::pair<std::string, std::string>> listeners;  // name, bound address
  long pid = 0;
  double start_time = 0;                 // seconds since the epoch
  std::string last_upgrade = "none";     // "none", or to_string(UpgradeResult)
  std::string last_upgrade_message;
};
std::string status_json(const StatusInput& in);
// Upstreams and their nodes; in-flight requests per upstream from the workers' cells.
std::string upstreams_json(const Snapshot& snapshot, const std::vector<const metrics::WorkerMetrics*>& shards);
// The effective configuration: what the file set and the defaults filled in. Secrets are left
// out: the admin token, and plugin confs (credentials live there), of which only names show.
std::string config_json(const Snapshot& snapshot);
// The errors of a refused reload: {"result": "failed", "errors": [{"file","line","message"}]}.
std::string reload_json(bool ok, uint64_t generation, const std::vector<config::ConfigError>& errors);

}  // namespace turnpike::proxy
