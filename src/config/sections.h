// The config loader's sections, shared between loader.cc (top level, log, limits, listeners,
// upstreams) and routes.cc (routes and their header rules). Private to src/config/.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "yaml_reader.h"

namespace turnpike::config::detail {

// Names of listeners, upstreams and routes appear in logs and in other items' references, so
// they are kept to printable ASCII without spaces or quotes.
bool valid_name(std::string_view name);
inline constexpr std::string_view kNameRule =
    "must be 1..128 printable ASCII characters without spaces, quotes or backslashes";

// `listener "public"`: how an item is named in messages.
std::string item_name(std::string_view kind, std::string_view name);

// RFC 9110 §5.6.2 token: header names, the `via` pseudonym.
bool is_token(std::string_view s);

// The canonical text of an IP literal ("::0" → "::"), or empty when `s` is not one.
std::string canonical_ip(std::string_view s);
// "[::1]" → "::1"; anything else unchanged.
std::string_view strip_brackets(std::string_view s);
// An IP literal or an RFC 1123 host name.
bool valid_upstream_host(std::string_view host);
// Short node form: "10.0.0.1:8080", "[::1]:8080", "backend.local:80" or a host alone (port
// unset). False with `why` (to follow the quoted text) when it is malformed.
bool parse_host_port(std::string_view s, std::string& host, std::optional<int64_t>& port, std::string& why);
// Node tags and zones: 1 to 64 letters, digits, '.', '_' or '-'.
bool valid_tag(std::string_view s);
inline constexpr std::string_view kTagRule = "1 to 64 letters, digits, '.', '_' or '-'";
inline constexpr std::string_view kSrvScheme = "srv://";  // a node given as "srv://_http._tcp.app.example"
// What is wrong with a node's host (an SRV owner name when node.srv), or empty when nothing is.
std::string node_host_error(const UpstreamNodeConfig& node);
// A node's identity within its upstream ("srv name" or "host:port"): listed twice is an error.
std::string node_identity(const UpstreamNodeConfig& node);

// Reads the `routes` list into cfg.routes, checking references against cfg.listeners and
// cfg.upstreams, which must already be loaded.
void load_routes(Diagnostics& diag, const YAML::Node& routes, Config& cfg);

// The plugin sections (plugins.cc). `relative` resolves a path against the config's directory.
void load_plugins(const Where& w, const YAML::Node& n, PluginList& out);
void load_consumers(Diagnostics& diag, const YAML::Node& n, Config& cfg);
void load_lua(Diagnostics& diag, const YAML::Node& n, LuaConfig& lua,
              const std::function<std::string(const std::string&)>& relative);
void load_plugin_paths(Diagnostics& diag, const YAML::Node& n, LuaConfig& lua,
                       const std::function<std::string(const std::string&)>& relative);
void load_shared_dicts(Diagnostics& diag, const YAML::Node& n, Config& cfg);
void load_rate_limits(Diagnostics& diag, const YAML::Node& n, RateLimitConfig& limits);
void load_cluster(Diagnostics& diag, const YAML::Node& n, ClusterConfig& cluster);
void load_admin(Diagnostics& diag, const YAML::Node& n, AdminConfig& admin);  // admin.cc

// Load balancing (balancing.cc): an upstream's balancing keys, a node's `zone`, the gateway's `zone`.
void load_upstream_balancing(const Where& uw, const YAML::Node& item, UpstreamBalancingConfig& b);
void load_node_zone(const Where& nw, const YAML::Node& n, UpstreamNodeConfig& node);
void load_gateway_zone(Diagnostics& diag, const YAML::Node& root, Config& cfg);

// log.access_fields (access_fields.cc): `spec` into ops; false with `why` for an unknown
// variable, or (json) text between variables or a variable twice.
bool parse_access_fields(std::string_view spec, bool json, std::vector<AccessField>& out, std::string& why);

// Node discovery (resolver.cc): the top-level `resolver` section, an upstream's `resolve_interval`.
void load_resolver(Diagnostics& diag, const YAML::Node& n, ResolverConfig& r);
void load_resolve_interval(const Where& uw, const YAML::Node& item, UpstreamConfig& u);

// An upstream's `health` section (health.cc), read after the rest of the upstream.
void load_health(const Where& w, const YAML::Node& h, UpstreamConfig& u);

// Warnings about a config that loaded without errors (checks.cc): routes that can never match,
// routes that can send a request back to the listener it came from. In file order.
std::vector<ConfigError> find_warnings(const Config& cfg);

}  // namespace turnpike::config::detail
