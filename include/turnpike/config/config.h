// The configuration model: what conf/*.yaml says, validated, as plain immutable data.
//
// A Config is built by load_config() and never changed afterwards; the proxy turns it into a
// runtime snapshot (routers, resolved upstreams) and shares it read-only between threads.
// Every item remembers the line it came from so later errors can point at it.
// The YAML schema is documented in docs/configuration.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "turnpike/router/router.h"

namespace turnpike::config {

using Duration = std::chrono::milliseconds;

struct SourceRef {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown (defaults)
  bool operator==(const SourceRef&) const = default;
};

// Limits applied to downstream (client) connections and requests.
struct ClientLimits {
  size_t max_request_line = 8192;
  size_t max_header_bytes = 32768;
  size_t max_headers = 100;
  uint64_t max_body_size = 0;                  // 0: unlimited; larger bodies → 413
  Duration header_timeout{10'000};             // whole request head must arrive within this
  Duration body_timeout{30'000};               // max gap between two reads of the request body
  Duration send_timeout{30'000};               // max gap between two writes to the client
  Duration keepalive_timeout{60'000};          // idle time between requests
  uint32_t max_requests_per_connection = 10'000;
  uint32_t max_connections_per_worker = 10'000;  // at the limit, idle keepalive ones close first
  bool merge_slashes = true;                   // path normalization: "//" → "/"
  bool operator==(const ClientLimits&) const = default;
};

struct ListenerConfig {
  std::string name;
  std::string address = "0.0.0.0";  // IPv4 or IPv6 literal
  uint16_t port = 0;                 // 0: pick a free port (tests); see --ready-file
  int backlog = 4096;
  SourceRef source;
  bool operator==(const ListenerConfig&) const = default;
};

struct UpstreamNodeConfig {
  std::string host;  // IP literal or a name resolved when the config is loaded
  uint16_t port = 80;
  uint32_t weight = 1;  // 1..10000
  SourceRef source;
  bool operator==(const UpstreamNodeConfig&) const = default;
};

struct UpstreamConfig {
  std::string name;
  std::vector<UpstreamNodeConfig> nodes;
  // Keepalive pool, per worker and per node.
  uint32_t keepalive_max_idle = 64;
  Duration keepalive_idle_timeout{55'000};  // below common origin keepalive timeouts (nginx: 75 s)
  uint32_t keepalive_max_requests = 10'000;
  Duration connect_timeout{3'000};
  Duration send_timeout{30'000};   // max gap between two writes to the upstream
  Duration read_timeout{30'000};   // max gap between two reads from the upstream
  uint32_t retries = 2;            // extra attempts on other nodes after a connect failure
  SourceRef source;
  bool operator==(const UpstreamConfig&) const = default;
};

struct HeaderOps {
  std::vector<std::pair<std::string, std::string>> set;  // replace (or add) the field
  std::vector<std::pair<std::string, std::string>> add;  // append another field line
  std::vector<std::string> remove;                       // drop every field with this name
  bool empty() const { return set.empty() && add.empty() && remove.empty(); }
  bool operator==(const HeaderOps&) const = default;
};

struct StaticResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool operator==(const StaticResponse&) const = default;
};

struct RouteConfig {
  std::string name;                    // defaults to "route#<index>"
  std::vector<std::string> listeners;  // empty: every listener
  router::RouteRule rule;              // match conditions; rule.route_index is the position here
  std::string upstream;                // name of the upstream to proxy to; empty when `respond`
  std::optional<StaticResponse> respond;
  HeaderOps request_headers;           // applied before forwarding upstream
  HeaderOps response_headers;          // applied before answering the client
  SourceRef source;
};

struct LogConfig {
  std::string error_log = "stderr";  // a path, "stderr" or "stdout"
  std::string level = "info";        // trace, debug, info, warn, error, critical, off
  std::string access_log = "off";    // a path, "stdout", "stderr" or "off"
  std::string access_format = "text";  // "text" or "json"
  bool operator==(const LogConfig&) const = default;
};

struct Config {
  std::string file;      // the path it was loaded from
  unsigned workers = 0;  // 0 means "auto": one per CPU core
  Duration drain_timeout{30'000};
  ClientLimits limits;
  LogConfig log;
  std::vector<ListenerConfig> listeners;
  std::vector<UpstreamConfig> upstreams;
  std::vector<RouteConfig> routes;

  const UpstreamConfig* find_upstream(std::string_view name) const;
};

struct ConfigError {
  std::string file;
  int line = 0;
  std::string message;
  std::string to_string() const;  // "file:line: message"
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is non-empty
  std::vector<ConfigError> errors;       // every problem found, in file order
};

// Reads, parses and validates a config file; collects every error rather than stopping at the
// first. Never throws.
LoadResult load_config_file(const std::string& path);
// Same, from text (tests); `file` names it in errors.
LoadResult load_config_string(const std::string& yaml, const std::string& file);

// "10s", "250ms", "2m", "1h" or a bare number of seconds.
std::optional<Duration> parse_duration(std::string_view s);
// "512", "8k", "32K", "1m", "2g" (powers of 1024).
std::optional<uint64_t> parse_size(std::string_view s);

}  // namespace turnpike::config
