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

#include "turnpike/common/ip_network.h"
#include "turnpike/lua/conf_value.h"
#include "turnpike/router/router.h"

namespace turnpike::config {

using Duration = std::chrono::milliseconds;

// Where an item was written. It is not part of what the item is: two items that differ only in
// their lines compare equal, so the defaulted operator== of every struct below compares what an
// item does, and a reload that only moves lines keeps its listeners and pools. Compare places
// with same_place().
struct SourceRef {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown (defaults)
  bool operator==(const SourceRef&) const { return true; }
  bool same_place(const SourceRef& o) const { return file == o.file && line == o.line; }
};

// Limits applied to downstream (client) connections and requests.
struct ClientLimits {
  size_t max_request_line = 8192;
  size_t max_header_bytes = 32768;
  size_t max_headers = 100;
  uint64_t max_body_size = 0;                  // 0: unlimited; larger bodies → 413
  Duration header_timeout{10'000};             // whole request head must arrive within this
  Duration body_timeout{30'000};               // max gap between two reads of the request body
  Duration body_deadline{300'000};             // the whole request body must arrive within this; 0: none
  Duration send_timeout{30'000};               // max gap between two writes to the client
  Duration keepalive_timeout{60'000};          // idle time between requests
  uint32_t max_requests_per_connection = 10'000;
  uint32_t max_connections_per_worker = 10'000;  // at the limit, idle keepalive ones close first
  bool merge_slashes = true;                   // path normalization: "//" → "/"
  bool operator==(const ClientLimits&) const = default;
};

// One certificate chain and its key. Which server names it answers for comes from the
// certificate (subjectAltName DNS names, else the CN) unless `server_names` lists them.
struct CertificateConfig {
  std::string cert_file;                  // PEM chain, leaf first
  std::string key_file;                   // PEM private key matching the leaf
  std::vector<std::string> server_names;  // optional override: exact or "*.example.com"
  SourceRef source;
  bool operator==(const CertificateConfig&) const = default;
};

// TLS termination on a listener.
struct ListenerTlsConfig {
  std::vector<CertificateConfig> certificates;  // SNI picks one; the first is the default
  std::string min_version = "TLSv1.2";          // "TLSv1.2" or "TLSv1.3"
  std::string ciphers;                          // TLS 1.2 cipher list; empty: a modern default
  std::string ciphersuites;                     // TLS 1.3 suites; empty: OpenSSL's default
  std::vector<std::string> alpn = {"h2", "http/1.1"};  // offered in preference order
  Duration handshake_timeout{10'000};
  bool session_tickets = true;
  Duration ticket_key_rotation{3'600'000};      // a new key every hour; the last 2 still decrypt
  bool operator==(const ListenerTlsConfig&) const = default;
};

// HTTP/2 on a listener: over TLS when ALPN picks h2; on cleartext as h2c with prior knowledge.
struct Http2Config {
  bool enabled = true;                 // TLS listeners: offer h2 in ALPN; cleartext: accept the h2c preface
  uint32_t max_concurrent_streams = 128;
  uint32_t max_header_list_size = 65536;  // decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE)
  uint32_t header_table_size = 4096;      // HPACK dynamic table we let the client use
  uint32_t initial_window_size = 65535;   // per stream, for request bodies
  uint32_t max_frame_size = 16384;
  uint32_t max_continuations = 8;          // CONTINUATION frames per header block (CVE-2024-28182)
  uint32_t max_resets_per_second = 200;    // client RST_STREAMs (Rapid Reset, CVE-2023-44487)
  uint32_t max_control_frames_per_second = 1000;  // SETTINGS/PING/empty DATA/PRIORITY floods
  uint32_t max_requests_per_connection = 100'000;
  Duration idle_timeout{180'000};          // no open stream for this long: GOAWAY and close
  bool operator==(const Http2Config&) const = default;
};

// A listener's sockets, and so their identity: a reload keeps the bound sockets of a listener
// whose ListenerSocketConfig compares equal and binds new ones for any other. Every field that
// shapes the socket belongs here. Settings read per connection (tls, http2) do not: they follow
// the new snapshot on the kept sockets, so a certificate renewal drops no queued connection.
struct ListenerSocketConfig {
  std::string name;
  std::string address = "0.0.0.0";  // IPv4 or IPv6 literal
  uint16_t port = 0;                 // 0: pick a free port (tests); see --ready-file
  int backlog = 4096;
  bool operator==(const ListenerSocketConfig&) const = default;
};

// One plugin as configured under a `plugins:` map (global, listener, route or consumer): its
// name and its conf, checked against the plugin's schema when the snapshot is built.
struct PluginConfig {
  std::string name;
  lua::ConfValue conf;  // a map (`{}` for a plugin written with an empty value)
  SourceRef source;     // the line of the plugin's key
  bool operator==(const PluginConfig&) const = default;
};

// The plugins of one level, in file order. Comparing equal always: plugins are not part of a
// listener's identity (a listener whose plugins change keeps its socket and its HTTP/2
// connections; the new chains apply to new requests through the snapshot).
struct PluginList {
  std::vector<PluginConfig> items;
  bool empty() const { return items.empty(); }
  bool operator==(const PluginList&) const { return true; }
};

// Equality (lines excepted) tells whether a reload changed the listener at all; an HTTP/2
// connection on a changed one is closed gracefully.
struct ListenerConfig : ListenerSocketConfig {
  std::optional<ListenerTlsConfig> tls;  // absent: cleartext
  Http2Config http2;
  PluginList plugins;  // run for every route on this listener (a route's own conf wins)
  // The client's address when a balancer or proxy stands in front (docs/configuration.md,
  // "Operations"): read per connection, so a reload applies them to new connections.
  bool proxy_protocol = false;             // every connection starts with a PROXY v1/v2 header
  Duration proxy_protocol_timeout{5'000};  // the header must arrive within this
  std::vector<IpNetwork> trusted;          // who may send PROXY headers; whose X-Forwarded-For counts
  bool real_ip = false;                    // the client is the last untrusted X-Forwarded-For hop
  SourceRef source;
  bool operator==(const ListenerConfig&) const = default;
};

struct UpstreamNodeConfig {
  std::string host;  // IP literal or a name resolved when the config is loaded
  uint16_t port = 80;
  uint32_t weight = 1;  // 1..10000
  std::vector<std::string> tags;  // gray release: tagged requests prefer nodes with their tag
  std::string zone;  // the node's zone (locality), compared with the gateway's `zone`; empty: none
  // `service:` (or "srv://name"): `host` is an SRV name whose targets, ports and weights are the
  // nodes (port and weight above unused). Discovery: docs/load-balancing.md.
  bool srv = false;
  SourceRef source;
  bool operator==(const UpstreamNodeConfig&) const = default;
};

// How an upstream chooses the node for a request (docs/load-balancing.md).
enum class BalancerKind : unsigned char {
  round_robin,      // smooth weighted round-robin (the default)
  least_request,    // fewest outstanding requests for the weight (per worker)
  ewma,             // peak-EWMA latency × outstanding requests, power of two choices
  consistent_hash,  // a Maglev table keyed by a request attribute (hash_key)
  random,           // weighted random
};
std::string_view to_string(BalancerKind k) noexcept;

// Where the consistent_hash balancer takes a request's key from.
enum class HashKeySource : unsigned char {
  remote_addr,  // the client's IP address
  header,       // a request header field (name)
  cookie,       // a cookie (name)
  query_arg,    // a query-string argument (name)
  route_param,  // a {param} of the route's path (name)
  consumer,     // the attached consumer's username
};
std::string_view to_string(HashKeySource k) noexcept;

struct HashKeyConfig {
  HashKeySource source = HashKeySource::remote_addr;
  std::string name;  // header, cookie, query_arg and route_param: which one
  bool operator==(const HashKeyConfig&) const = default;
};

// Load balancing, retries and locality of one upstream (loaded by src/config/balancing.cc).
struct UpstreamBalancingConfig {
  BalancerKind balancer = BalancerKind::round_robin;
  HashKeyConfig hash_key;
  Duration ewma_decay{10'000};           // ewma: how fast an observed latency peak fades
  std::vector<int> retry_on_statuses;    // idempotent requests go again on these statuses
  bool retry_on_timeout = false;         // idempotent requests go again after a read/send timeout
  uint32_t retry_budget_percent = 20;    // retries per worker: this share of requests ...
  uint32_t retry_budget_min_per_second = 10;  // ... and at least this many a second
  bool prefer_local_zone = false;        // pick among nodes of the gateway's zone ...
  uint32_t local_zone_min_usable = 1;    // ... unless fewer local nodes than this are usable
  uint32_t local_zone_min_percent = 0;   // ... or fewer than this share of them
  bool operator==(const UpstreamBalancingConfig&) const = default;
};

// How Turnpike talks to an upstream.
enum class UpstreamProtocol : unsigned char {
  http1,  // HTTP/1.1, one request per connection at a time (keepalive pool)
  h2c,    // HTTP/2 over cleartext, prior knowledge; many streams per connection
  h2,     // HTTP/2 over TLS (ALPN h2); requires tls
};

// TLS towards an upstream ("https" / h2 upstreams).
struct UpstreamTlsConfig {
  bool enabled = false;
  std::string sni;             // empty: the node's host when it is a name, else none
  bool verify = true;          // verify the chain and the name (sni, or the node host)
  std::string ca_file;         // empty: the system bundle
  std::string cert_file;       // client certificate (mTLS), optional
  std::string key_file;
  bool session_reuse = true;   // resume TLS sessions on new pooled connections
  bool operator==(const UpstreamTlsConfig&) const = default;
};

// Passive health checks: failures seen in live traffic eject a node for a while (docs/health-checks.md).
struct PassiveHealthConfig {
  bool enabled = true;                  // on by default, as nginx's max_fails is
  uint32_t failures = 1;                // failures in a row that eject a node
  std::vector<int> statuses;            // response statuses that count as failures (none by default)
  Duration ejection_time{10'000};       // the first ejection; doubled on each repeated one
  Duration max_ejection_time{300'000};  // the cap of the doubling
  bool operator==(const PassiveHealthConfig&) const = default;
};

// What an active check does.
enum class HealthCheckType : unsigned char {
  none,   // no active checks
  http,   // an HTTP/1.1 request; healthy when the status (and body) match
  https,  // the same over TLS (the upstream's tls settings)
  tcp,    // a TCP connect
  h2,     // an HTTP request over HTTP/2 (h2c prior knowledge, or TLS with ALPN h2)
  grpc,   // grpc.health.v1.Health/Check over HTTP/2; healthy when SERVING
};

// Active health checks: one checker per process probes every node (docs/health-checks.md).
struct ActiveHealthConfig {
  HealthCheckType type = HealthCheckType::none;
  std::string method = "GET";
  std::string path = "/";
  std::string host;                     // Host header; empty: the node's host
  std::vector<int> statuses;            // healthy statuses; empty: 200-399
  std::string body;                     // the body must contain this; empty: any body
  std::string grpc_service;             // grpc checks: the service asked about; empty: the server
  uint16_t port = 0;                    // 0: the node's port
  Duration interval{1'000};             // between checks of a healthy node
  Duration unhealthy_interval{1'000};   // between checks of an unhealthy node
  Duration timeout{1'000};
  uint32_t healthy = 2;                 // successes in a row that bring a node back
  uint32_t unhealthy = 2;               // failures in a row that take it out
  bool operator==(const ActiveHealthConfig&) const = default;
};

// When every node of an upstream is down.
enum class AllDownPolicy : unsigned char {
  fail,     // answer 503 no_healthy_upstream at once
  try_all,  // `try`: balance over all nodes as if none were down
};

struct UpstreamHealthConfig {
  PassiveHealthConfig passive;
  ActiveHealthConfig active;
  uint32_t max_ejected_percent = 50;  // at most this share of the nodes is out at once
  Duration slow_start{0};             // a recovered or added node's weight ramps up over this
  bool start_unhealthy = false;       // `initial: unhealthy`: nodes added by a reload wait for checks
  AllDownPolicy all_down = AllDownPolicy::fail;
  bool operator==(const UpstreamHealthConfig&) const = default;
};

// An upstream's settings apart from its nodes and health checks: what its connection pools are
// made for. A reload that changes only nodes or health (a rolling update, a discovery answer)
// lets the new pool take the old one's connections to the nodes that stay
// (UpstreamPool::same_but_nodes); any other change makes every connection new. So a new setting
// belongs here unless changing it may leave open connections as they are.
struct UpstreamSettings {
  std::string name;
  UpstreamProtocol protocol = UpstreamProtocol::http1;
  UpstreamTlsConfig tls;
  uint32_t h2_max_streams_per_connection = 100;  // h2/h2c: open another connection past this
  // Keepalive pool, per worker and per node.
  uint32_t keepalive_max_idle = 64;
  Duration keepalive_idle_timeout{55'000};  // below common origin keepalive timeouts (nginx: 75 s)
  uint32_t keepalive_max_requests = 10'000;
  Duration connect_timeout{3'000};
  Duration send_timeout{30'000};   // max gap between two writes to the upstream
  Duration read_timeout{30'000};   // max gap between two reads from the upstream
  uint32_t retries = 2;            // extra attempts on other nodes after a connect failure
  UpstreamBalancingConfig balancing;
  // How often its host names are looked up again; unset: the resolver's interval (or TTLs).
  std::optional<Duration> resolve_interval;
  SourceRef source;
  bool operator==(const UpstreamSettings&) const = default;
};

// Equality is the upstream's identity: a reload keeps the connection pools of an upstream whose
// config compares equal and replaces any other (every field counts, lines excepted).
struct UpstreamConfig : UpstreamSettings {
  std::vector<UpstreamNodeConfig> nodes;
  // `nodes_file`: the nodes are read from this file (absolute), at load and again whenever it
  // changes (server/node_files.h); empty when they are listed under `nodes`.
  std::string nodes_file;
  UpstreamHealthConfig health;  // passive and active health checks
  bool operator==(const UpstreamConfig&) const = default;
  // This upstream with `other` nodes, every other field the same (a node file's update), made
  // without copying the current nodes.
  UpstreamConfig with_nodes(std::vector<UpstreamNodeConfig> other) const;
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
  PluginList plugins;                  // this route's plugins (override global and listener)
  SourceRef source;
};

// An API client known to the gateway: authentication plugins find it by its credentials (the
// conf of that plugin here, e.g. key-auth: {key: ...}); its other plugins then run for its
// requests too (a consumer's conf wins over the route's for the same plugin).
struct ConsumerConfig {
  std::string username;
  PluginList plugins;
  SourceRef source;
};

// The Lua plugin runtime (one VM per worker).
struct LuaConfig {
  std::string plugins_dir;                // the bundled plugins (default: built in)
  std::vector<std::string> plugin_paths;  // users' plugin directories, searched in order
  uint64_t memory_limit = 64u << 20;      // per worker VM
  uint64_t instruction_budget = 10'000'000;  // per phase call of a user plugin
  Duration phase_timeout{60'000};         // a phase call that waits longer fails
  uint64_t max_body_buffer = 1u << 20;    // request body bytes a plugin may read ahead
  SourceRef source;
};

// A node-wide shared dictionary (`turnpike.shared.<name>` in plugins).
struct SharedDictConfig {
  std::string name;
  uint64_t size = 0;  // bytes
  SourceRef source;
};

// The node's rate-limit table (turnpike.limit: limit-count, limit-req, limit-conn).
struct RateLimitConfig {
  uint64_t table_size = 16u << 20;  // bytes; made at start (a change takes effect on restart)
};

// The gateway cluster this node belongs to. `nodes` divides cluster-wide limits (limit plugins
// with `cluster: true`); a later issue feeds it from etcd leases instead.
struct ClusterConfig {
  unsigned nodes = 1;
};

// Which addresses of a name become nodes (resolver.family).
enum class AddressFamily : unsigned char {
  any,          // A and AAAA records alike
  ipv4,         // A records only
  ipv6,         // AAAA records only
  prefer_ipv4,  // A records; AAAA records when a name has no A record (the default)
  prefer_ipv6,  // AAAA records; A records when a name has no AAAA record
};
std::string_view to_string(AddressFamily f) noexcept;

// Node discovery (`resolver:`): the DNS servers upstream host names are looked up at and how
// often (upstream/discovery.h). Like nginx's `resolver` directive.
struct ResolverConfig {
  std::vector<std::string> servers;  // "ip" or "ip:port" / "[ip6]:port"; empty: /etc/resolv.conf
  Duration interval{30'000};         // re-resolution period; 0: only at start and reload
  bool respect_ttl = false;          // true: look up again when the records' TTL runs out...
  Duration min_ttl{1'000};           // ...but not sooner than this
  Duration max_ttl{3'600'000};       // ...nor later
  Duration timeout{2'000};           // one query's wait for an answer (tried twice per server)
  AddressFamily family = AddressFamily::prefer_ipv4;
  SourceRef source;
  bool operator==(const ResolverConfig&) const = default;
};

// The admin listener (proxy/admin.cc): /metrics, /status, /ready and the admin API. Without an
// `admin:` section there is none, and no metrics are recorded.
struct AdminConfig {
  bool enabled = false;
  std::string address = "127.0.0.1";  // IPv4 or IPv6 literal; loopback unless a token is set
  uint16_t port = 9901;               // 0: pick a free port (tests; the ready file says which)
  std::string token;                  // bearer token; required on a non-loopback address
  bool metrics = true;                // record metrics and serve /metrics
  uint32_t series_cap = 10'000;       // names per label space with series of their own
  SourceRef source;
  bool operator==(const AdminConfig&) const = default;
};

// The variables of a configured access log line (log.access_fields; docs/configuration.md), nginx's
// names where nginx has one. Parsed once at load (access_fields.cc) into AccessField ops.
enum class AccessVar : uint8_t {
  literal,                 // text between variables (text format only)
  remote_addr,             // client IP (real_ip or PROXY protocol applied)
  remote_port,             // client port; empty when real_ip replaced the address
  time_iso8601,            // request start, UTC, milliseconds
  msec,                    // request start, seconds since the epoch with milliseconds
  request_id,              // the request-id plugin's id
  host,                    // Host / :authority as sent
  request,                 // "GET /x HTTP/1.1"
  request_method,
  request_uri,             // the request-target as sent
  server_protocol,         // "HTTP/1.1", "HTTP/2.0"
  scheme,                  // "http" or "https"
  status,
  body_bytes_sent,         // response body bytes
  request_body_bytes,      // request body bytes received
  request_time,            // seconds, millisecond precision
  route,
  consumer,
  error,                   // the outcome code of a failed request ("upstream_timeout")
  upstream_addr,           // every node tried, in order
  upstream_status,         // per try
  upstream_connect_time,   // per try, seconds; 0 on a reused connection
  upstream_header_time,    // per try, seconds from the try's start to its response head
  upstream_response_time,  // per try, seconds from the try's start to its end
  ssl_protocol,            // the client connection's TLS version ("TLSv1.3")
  ssl_cipher,              // and cipher suite
  http_header,             // $http_<name>: a request header field
};
std::string_view to_string(AccessVar v) noexcept;

struct AccessField {
  AccessVar var = AccessVar::literal;
  std::string text;  // literal: the text; http_header: the field name (lower case, '-' for '_')
  std::string key;   // the JSON key: the variable's name without '$' ("http_user_agent")
  bool operator==(const AccessField&) const = default;
};

struct LogConfig {
  std::string error_log = "stderr";  // a path, "stderr" or "stdout"
  std::string level = "info";        // trace, debug, info, warn, error, critical, off
  std::string access_log = "off";    // a path, "stdout", "stderr" or "off"
  std::string access_format = "text";  // "text" or "json"
  // access_fields: the line as a list of variables (and, in text, the literal text around them);
  // empty: the default line (access_format.h).
  std::vector<AccessField> access_fields;
  SourceRef error_log_source;          // where error_log / access_log were set, for -t
  SourceRef access_log_source;
  bool operator==(const LogConfig&) const = default;
};

struct Config {
  std::string file;      // the path it was loaded from
  unsigned workers = 0;  // 0 means "auto": one per CPU core
  Duration drain_timeout{30'000};
  // SIGTERM: report not-ready (still accepting) this long before the drain, so an L4 balancer's
  // health check takes the node out first.
  Duration shutdown_delay{0};
  ClientLimits limits;
  LogConfig log;
  // The pseudonym this proxy adds to `Via` (RFC 9110 §7.6.3) and recognizes there to detect a
  // request that came back to it (508); empty when `via: off`.
  std::string via = "turnpike";
  std::string pid_file;  // written at start, removed at exit; empty: none
  SourceRef pid_file_source;
  // Binary upgrade (SIGUSR2, POST /upgrade): the binary started (empty: the running one's path
  // on disk) and how long it may take to be ready before it is killed and the old one serves on.
  std::string upgrade_binary;
  Duration upgrade_timeout{30'000};
  std::string zone;      // this gateway's zone: upstreams with prefer_local_zone favour its nodes
  std::vector<ListenerConfig> listeners;
  std::vector<UpstreamConfig> upstreams;
  std::vector<RouteConfig> routes;
  PluginList plugins;                       // global: every route on every listener
  std::vector<ConsumerConfig> consumers;
  LuaConfig lua;
  std::vector<SharedDictConfig> shared_dicts;
  RateLimitConfig rate_limits;
  ClusterConfig cluster;
  AdminConfig admin;
  ResolverConfig resolver;

  // Whether any level configures a plugin (no Lua VM is made otherwise).
  bool uses_plugins() const;
  const UpstreamConfig* find_upstream(std::string_view name) const;
};

struct ConfigError {
  std::string file;
  int line = 0;
  std::string message;
  bool warning = false;           // a config that works, but likely not as meant
  std::string to_string() const;  // "file:line: message", "file:line: warning: message"
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is non-empty
  std::vector<ConfigError> errors;       // every problem found, in file order
  std::vector<ConfigError> warnings;     // found only when there are no errors, in file order
};

// Reads, parses and validates a config file; collects every error rather than stopping at the
// first. Never throws.
LoadResult load_config_file(const std::string& path);
// Same, from text (tests); `file` names it in errors.
LoadResult load_config_string(const std::string& yaml, const std::string& file);

// A node file (upstream `nodes_file`, docs/configuration.md "Node files"): one node per line,
// "host:port" (or "[v6]:port", a host alone for port 80, "srv://name") followed by options
// weight=N, zone=NAME, tags=A,B; '#' starts a comment. Fills `nodes` (file order) or adds every
// error found, at its line of `path`, and returns false. No nodes at all is an error.
bool parse_node_file(std::string_view text, const std::string& path, std::vector<UpstreamNodeConfig>& nodes,
                     std::vector<ConfigError>& errors);
// The same, reading `path` (a file that cannot be read is an error at its line 0).
bool read_node_file(const std::string& path, std::vector<UpstreamNodeConfig>& nodes, std::vector<ConfigError>& errors);
// Reads a whole file of at most `max_size` bytes; false with `error` ("cannot read: reason").
bool read_small_file(const std::string& path, size_t max_size, std::string& text, std::string& error);

// What a start needs from the file system, checked without changing anything that is there:
// every log file opens for appending (it is created when missing, as a start would), the pid
// file's directory is writable. Errors point at the key's line. `turnpike -t`, start and reload.
std::vector<ConfigError> check_files(const Config& cfg);

// "10s", "250ms", "2m", "1h" or a bare number of seconds.
std::optional<Duration> parse_duration(std::string_view s);
// "512", "8k", "32K", "1m", "2g" (powers of 1024).
std::optional<uint64_t> parse_size(std::string_view s);

}  // namespace turnpike::config
