// Loading a config: YAML text → validated Config, collecting every error in one pass.
//
// Sections are read in dependency order rather than text order (listeners and upstreams before
// routes, which refer to them); errors are sorted by line at the end, so the user still sees
// them in file order. Nothing here throws: yaml-cpp's exceptions become errors.
// Routes live in routes.cc; address parsing in addresses.cc; the node readers in yaml_reader.cc.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_set>

#include "sections.h"
#include "turnpike/common/strings.h"

namespace turnpike::config {

using detail::Diagnostics;
using detail::Where;
using detail::check_keys;
using detail::describe;
using detail::expect_list;
using detail::expect_map;
using detail::field;
using detail::field_duration;
using detail::field_int;
using detail::field_size;
using detail::quote;

namespace detail {

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '"' || c == '\'' || c == '\\') return false;
  }
  return true;
}

std::string item_name(std::string_view kind, std::string_view name) {
  return std::string(kind) + " " + quote(name);
}

}  // namespace detail

namespace {

constexpr Duration kPositive{1};  // the smallest duration accepted where 0 makes no sense
constexpr Duration kZero{0};

using detail::canonical_ip;
using detail::parse_host_port;
using detail::strip_brackets;
using detail::valid_upstream_host;

// ---------------------------------------------------------------------------------------------
// The loader
// ---------------------------------------------------------------------------------------------

class Loader {
 public:
  Loader(Diagnostics& diag, Config& cfg) : diag_(diag), cfg_(cfg) {}

  // Relative file paths in the config (certificates, keys, CA bundles) are relative to the
  // config file's directory, so a config and its files can move together.
  std::string relative_to_config(const std::string& path) const {
    if (path.empty() || path.front() == '/') return path;
    const size_t slash = cfg_.file.rfind('/');
    if (slash == std::string::npos) return path;
    return cfg_.file.substr(0, slash + 1) + path;
  }

  void load(const YAML::Node& root) {
    Where top(diag_, "");
    if (root.IsNull() || !root.IsDefined()) {
      top.error(root, "the configuration is empty: at least one listener is required");
      return;
    }
    if (!root.IsMap()) {
      top.error(root, "expected a mapping at the top level, got " + describe(root));
      return;
    }
    root_line_ = detail::line_of(root);
    check_keys(top, root,
               {"workers", "drain_timeout", "shutdown_delay", "via", "pid_file", "log", "limits", "listeners", "upstreams",
                "routes", "plugins", "consumers", "plugin_paths", "lua", "shared_dicts",
                "rate_limits", "cluster", "zone", "admin", "upgrade_binary", "upgrade_timeout", "resolver"});
    load_workers(root["workers"]);
    field_duration(top, root, "drain_timeout", cfg_.drain_timeout, kZero);
    field_duration(top, root, "shutdown_delay", cfg_.shutdown_delay, kZero);
    field_duration(top, root, "upgrade_timeout", cfg_.upgrade_timeout, Duration{1});
    if (root["upgrade_binary"]) {
      field(top, root, "upgrade_binary", cfg_.upgrade_binary);
      cfg_.upgrade_binary = relative_to_config(cfg_.upgrade_binary);
    }
    load_via(root["via"]);
    load_gateway_zone(diag_, root, cfg_);
    if (const YAML::Node n = root["pid_file"]) {
      field(top, root, "pid_file", cfg_.pid_file);
      if (n.IsScalar() && cfg_.pid_file.empty()) top.key("pid_file").error(n, "must not be empty; leave it out for no pid file");
      cfg_.pid_file = relative_to_config(cfg_.pid_file);
      cfg_.pid_file_source = top.source(n);
    }
    // An optional section left empty ("routes:" with its items commented out) is as good as
    // absent.
    auto section = [&](const char* key) {
      const YAML::Node n = root[key];
      return n && !n.IsNull() ? n : YAML::Node(YAML::NodeType::Undefined);
    };
    if (const YAML::Node n = section("log")) load_log(n);
    if (const YAML::Node n = section("limits")) load_limits(n);
    load_listeners(section("listeners"));
    if (const YAML::Node n = section("upstreams")) load_upstreams(n);
    if (const YAML::Node n = section("routes")) detail::load_routes(diag_, n, cfg_);
    auto relative = [this](const std::string& p) { return relative_to_config(p); };
    if (const YAML::Node n = section("plugins")) detail::load_plugins(Where(diag_, "", "plugins"), n, cfg_.plugins);
    if (const YAML::Node n = section("consumers")) detail::load_consumers(diag_, n, cfg_);
    if (const YAML::Node n = section("lua")) detail::load_lua(diag_, n, cfg_.lua, relative);
    if (const YAML::Node n = section("plugin_paths")) detail::load_plugin_paths(diag_, n, cfg_.lua, relative);
    if (const YAML::Node n = section("shared_dicts")) detail::load_shared_dicts(diag_, n, cfg_);
    if (const YAML::Node n = section("rate_limits")) detail::load_rate_limits(diag_, n, cfg_.rate_limits);
    if (const YAML::Node n = section("cluster")) detail::load_cluster(diag_, n, cfg_.cluster);
    if (const YAML::Node n = section("admin")) detail::load_admin(diag_, n, cfg_.admin);
    if (const YAML::Node n = section("resolver")) detail::load_resolver(diag_, n, cfg_.resolver);
  }

 private:
  void load_workers(const YAML::Node& n) {
    if (!n) return;
    if (n.IsScalar() && n.Scalar() == "auto") {
      cfg_.workers = 0;
      return;
    }
    Where w(diag_, "", "workers");
    if (!n.IsScalar() || !parse_decimal(n.Scalar())) {
      w.error(n, "expected \"auto\" or a number of threads, got " + describe(n));
      return;
    }
    if (auto v = detail::read_int(w, n, 1, 256)) cfg_.workers = static_cast<unsigned>(*v);
  }

  // Without `via:`, the host name: two Turnpike tiers on different machines (an edge gateway in
  // front of an internal one) must not take each other's entries for their own, which a shared
  // default name would turn into a 508 for every request. Squid does the same. Host names are
  // tokens already; anything else falls back to "turnpike".
  static std::string default_via() {
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) != 0) return "turnpike";
    std::string name(host);
    if (name.empty() || name.size() > 64 || !detail::is_token(name)) return "turnpike";
    return name;
  }

  // RFC 9110 §7.6.3: Via's received-by is a pseudonym (a token) when the host is not disclosed.
  void load_via(const YAML::Node& n) {
    if (!n) {
      cfg_.via = default_via();
      return;
    }
    Where w(diag_, "", "via");
    std::optional<std::string> s = detail::read_string(w, n);
    if (!s) return;
    if (*s == "off") {
      cfg_.via.clear();
    } else if (detail::is_token(*s) && s->size() <= 64) {
      cfg_.via = *s;
    } else {
      w.error(n, quote(*s) + " is not a pseudonym: 1..64 letters, digits and !#$%&'*+-.^_`|~ (or \"off\")");
    }
  }

  void load_log(const YAML::Node& n) {
    Where w(diag_, "", "log");
    if (!expect_map(w, n)) return;
    check_keys(w, n, {"error_log", "level", "access_log", "access_format", "access_fields"});
    LogConfig& log = cfg_.log;
    field(w, n, "error_log", log.error_log);
    field(w, n, "level", log.level);
    field(w, n, "access_log", log.access_log);
    field(w, n, "access_format", log.access_format);
    if (const YAML::Node v = n["error_log"]) log.error_log_source = w.source(v);
    if (const YAML::Node v = n["access_log"]) log.access_log_source = w.source(v);
    if (const YAML::Node v = n["error_log"]; v && v.IsScalar()) {
      if (log.error_log.empty()) w.key("error_log").error(v, "must not be empty");
      if (log.error_log == "off") {
        w.key("error_log").error(v, "the error log cannot be turned off; use level: off");
      }
    }
    if (const YAML::Node v = n["access_log"]; v && v.IsScalar() && log.access_log.empty()) {
      w.key("access_log").error(v, "must not be empty; use \"off\" for no access log");
    }
    static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn",
                                                   "error", "critical", "off"};
    if (const YAML::Node v = n["level"]; v && v.IsScalar()) {
      if (std::find(std::begin(kLevels), std::end(kLevels), log.level) == std::end(kLevels)) {
        w.key("level").error(v, "unknown level " + quote(log.level) +
                                    " (trace, debug, info, warn, error, critical or off)");
      }
    }
    if (const YAML::Node v = n["access_format"]; v && v.IsScalar()) {
      if (log.access_format != "text" && log.access_format != "json") {
        w.key("access_format").error(v, "must be \"text\" or \"json\", got " + quote(log.access_format));
      }
    }
    if (const YAML::Node v = n["access_fields"]) load_access_fields(w.key("access_fields"), v, log);
  }

  // A string of variables ("$remote_addr $status"), or a list of them (joined by spaces).
  void load_access_fields(const Where& w, const YAML::Node& v, LogConfig& log) {
    std::string spec;
    if (v.IsSequence()) {
      auto items = detail::read_string_list(w, v);
      if (!items) return;
      for (const auto& [item, node] : *items) spec += (spec.empty() ? "" : " ") + item;
    } else if (auto s = detail::read_string(w, v)) {
      spec = *s;
    } else {
      return;
    }
    std::string why;
    if (!detail::parse_access_fields(spec, log.access_format == "json", log.access_fields, why)) {
      log.access_fields.clear();
      w.error(v, why);
    }
  }

  void load_limits(const YAML::Node& n) {
    Where w(diag_, "", "limits");
    if (!expect_map(w, n)) return;
    check_keys(w, n,
               {"max_request_line", "max_header_bytes", "max_headers", "max_body_size",
                "header_timeout", "body_timeout", "body_deadline", "send_timeout", "keepalive_timeout",
                "max_requests_per_connection", "max_connections_per_worker", "merge_slashes"});
    ClientLimits& l = cfg_.limits;
    uint64_t v = l.max_request_line;
    field_size(w, n, "max_request_line", v, 256, 1 << 20);
    l.max_request_line = v;
    v = l.max_header_bytes;
    field_size(w, n, "max_header_bytes", v, 1 << 10, 16 << 20);
    l.max_header_bytes = v;
    field_int(w, n, "max_headers", l.max_headers, 1, 10'000);
    field_size(w, n, "max_body_size", l.max_body_size, 0, UINT64_MAX);
    field_duration(w, n, "header_timeout", l.header_timeout, kPositive);
    field_duration(w, n, "body_timeout", l.body_timeout, kPositive);
    field_duration(w, n, "body_deadline", l.body_deadline, kZero);
    field_duration(w, n, "send_timeout", l.send_timeout, kPositive);
    field_duration(w, n, "keepalive_timeout", l.keepalive_timeout, kPositive);
    field_int(w, n, "max_requests_per_connection", l.max_requests_per_connection, 1, UINT32_MAX);
    field_int(w, n, "max_connections_per_worker", l.max_connections_per_worker, 1, 1'000'000);
    field(w, n, "merge_slashes", l.merge_slashes);
  }

  // Reads and checks the `name` of a list item. Returns the Where for the rest of the item:
  // `listener "public"` once the name is known, `listener #2` when it is missing or invalid.
  Where named_item(const YAML::Node& item, std::string_view kind, size_t index,
                   std::string& name) {
    Where w(diag_, std::string(kind) + " #" + std::to_string(index + 1));
    const YAML::Node n = item["name"];
    if (!n) {
      w.error(item, "\"name\" is required");
      return w;
    }
    std::optional<std::string> s = detail::read_string(w.key("name"), n);
    if (!s) return w;
    if (!detail::valid_name(*s)) {
      w.key("name").error(n, quote(*s) + " " + std::string(detail::kNameRule));
      return w;
    }
    name = *s;
    return w.item(detail::item_name(kind, name));
  }

  void load_listeners(const YAML::Node& list) {
    Where w(diag_, "", "listeners");
    if (!list) {
      w.error_at_line(root_line_, "at least one listener is required");
      return;
    }
    if (!expect_list(w, list)) return;
    if (list.size() == 0) {
      w.error(list, "at least one listener is required");
      return;
    }
    size_t i = 0;
    for (auto it = list.begin(); it != list.end(); ++it, ++i) {
      const YAML::Node& item = *it;
      if (!expect_map(w.index(i), item)) continue;
      ListenerConfig l;
      l.source = w.source(item);
      Where lw = named_item(item, "listener", i, l.name);
      check_keys(lw, item, {"name", "address", "port", "backlog", "tls", "http2", "plugins", "proxy_protocol",
                            "proxy_protocol_timeout", "trusted", "real_ip"});
      if (const YAML::Node p = item["plugins"]) detail::load_plugins(lw.key("plugins"), p, l.plugins);
      if (const YAML::Node a = item["address"]) {
        if (std::optional<std::string> s = detail::read_string(lw.key("address"), a)) {
          l.address = std::string(strip_brackets(*s));
          if (canonical_ip(l.address).empty()) {
            lw.key("address").error(a, quote(*s) + " is not an IPv4 or IPv6 address");
          }
        }
      }
      if (!item["port"]) lw.error(item, "\"port\" is required (0 picks a free port)");
      field_int(lw, item, "port", l.port, 0, 65535);
      field_int(lw, item, "backlog", l.backlog, 1, 65535);
      if (const YAML::Node t = item["tls"]) load_listener_tls(lw.key("tls"), t, l);
      if (const YAML::Node h = item["http2"]) load_http2(lw.key("http2"), h, l.http2);
      load_client_address(lw, item, l);
      for (const ListenerConfig& other : cfg_.listeners) {
        if (!l.name.empty() && other.name == l.name) {
          lw.error(item["name"], "name is already used by the listener at line " +
                                     std::to_string(other.source.line));
        }
        if (l.port != 0 && other.port == l.port &&
            canonical_ip(other.address) == canonical_ip(l.address) &&
            !canonical_ip(l.address).empty()) {
          lw.error(item, l.address + " port " + std::to_string(l.port) +
                             " is already used by " + detail::item_name("listener", other.name));
        }
      }
      cfg_.listeners.push_back(std::move(l));
    }
  }

  // proxy_protocol, trusted, real_ip: who may tell us the client's address.
  void load_client_address(const Where& lw, const YAML::Node& item, ListenerConfig& l) {
    field(lw, item, "proxy_protocol", l.proxy_protocol);
    field_duration(lw, item, "proxy_protocol_timeout", l.proxy_protocol_timeout, kPositive);
    field(lw, item, "real_ip", l.real_ip);
    if (const YAML::Node t = item["trusted"]) {
      if (auto list = detail::read_string_list(lw.key("trusted"), t)) {
        for (const auto& [text, node] : *list) {
          if (auto net = parse_network(text)) {
            l.trusted.push_back(*net);
          } else {
            lw.key("trusted").error(node, quote(text) + " is not an IP address or network (\"10.0.0.0/8\")");
          }
        }
      }
    }
    // Believing every source would let any client choose its address (and so its limits).
    if ((l.proxy_protocol || l.real_ip) && l.trusted.empty() && !item["trusted"]) {
      lw.error(item, std::string(l.proxy_protocol ? "proxy_protocol" : "real_ip") +
                         " needs \"trusted\": the balancers' addresses or networks");
    }
  }

  void load_listener_tls(const Where& w, const YAML::Node& t, ListenerConfig& l) {
    if (!expect_map(w, t)) return;
    check_keys(w, t, {"certificates", "min_version", "ciphers", "ciphersuites", "alpn",
                      "handshake_timeout", "session_tickets", "ticket_key_rotation"});
    ListenerTlsConfig tls;
    const YAML::Node certs = t["certificates"];
    if (!certs) {
      w.error(t, "\"certificates\" is required: at least one cert/key pair");
    } else if (expect_list(w.key("certificates"), certs)) {
      if (certs.size() == 0) w.key("certificates").error(certs, "at least one cert/key pair is required");
      size_t i = 0;
      for (auto it = certs.begin(); it != certs.end(); ++it, ++i) {
        Where cw = w.key("certificates").index(i);
        const YAML::Node& c = *it;
        if (!expect_map(cw, c)) continue;
        check_keys(cw, c, {"cert", "key", "server_names"});
        CertificateConfig cc;
        cc.source = cw.source(c);
        if (!c["cert"]) cw.error(c, "\"cert\" is required (a PEM certificate chain file)");
        if (!c["key"]) cw.error(c, "\"key\" is required (a PEM private key file)");
        field(cw, c, "cert", cc.cert_file);
        field(cw, c, "key", cc.key_file);
        cc.cert_file = relative_to_config(cc.cert_file);
        cc.key_file = relative_to_config(cc.key_file);
        if (const YAML::Node sn = c["server_names"]; sn && sn.IsSequence() && sn.size() == 0) {
          // An empty override would leave the certificate answering for no name at all.
          cw.key("server_names").error(sn, "an empty list is not allowed; leave the key out to use the certificate's names");
        } else if (sn) {
          if (auto names = detail::read_string_list(cw.key("server_names"), sn)) {
            for (auto& [name, node] : *names) {
              std::string lower = to_lower_copy(name);
              std::string_view bare = std::string_view(lower).starts_with("*.") ? std::string_view(lower).substr(2) : std::string_view(lower);
              if (bare.empty() || bare.find('*') != std::string_view::npos || bare.find_first_of(" /:") != std::string_view::npos) {
                cw.key("server_names").error(node, quote(name) + " is not a host name or \"*.\" wildcard");
                continue;
              }
              cc.server_names.push_back(std::move(lower));
            }
          }
        }
        tls.certificates.push_back(std::move(cc));
      }
    }
    if (const YAML::Node v = t["min_version"]) {
      if (auto s = detail::read_string(w.key("min_version"), v)) {
        if (*s != "TLSv1.2" && *s != "TLSv1.3") {
          w.key("min_version").error(v, quote(*s) + " is not supported: use \"TLSv1.2\" or \"TLSv1.3\"");
        } else {
          tls.min_version = *s;
        }
      }
    }
    field(w, t, "ciphers", tls.ciphers);
    field(w, t, "ciphersuites", tls.ciphersuites);
    if (const YAML::Node a = t["alpn"]) {
      if (auto protos = detail::read_string_list(w.key("alpn"), a)) {
        tls.alpn.clear();
        for (auto& [p, node] : *protos) {
          if (p != "h2" && p != "http/1.1") {
            w.key("alpn").error(node, quote(p) + " is not supported: use \"h2\" and/or \"http/1.1\"");
            continue;
          }
          tls.alpn.push_back(p);
        }
        if (tls.alpn.empty()) w.key("alpn").error(a, "at least one protocol is required");
      }
    }
    field_duration(w, t, "handshake_timeout", tls.handshake_timeout, kPositive);
    field(w, t, "session_tickets", tls.session_tickets);
    field_duration(w, t, "ticket_key_rotation", tls.ticket_key_rotation, Duration{60'000});
    l.tls = std::move(tls);
  }

  void load_http2(const Where& w, const YAML::Node& h, Http2Config& c) {
    if (!expect_map(w, h)) return;
    check_keys(w, h, {"enabled", "max_concurrent_streams", "max_header_list_size", "header_table_size",
                      "initial_window_size", "max_frame_size", "max_continuations", "max_resets_per_second",
                      "max_control_frames_per_second", "max_requests_per_connection", "idle_timeout"});
    field(w, h, "enabled", c.enabled);
    field_int(w, h, "max_concurrent_streams", c.max_concurrent_streams, 1, 10'000);
    if (const YAML::Node n = h["max_header_list_size"]) {
      if (auto v = detail::read_size(w.key("max_header_list_size"), n, 1024, 16u << 20)) c.max_header_list_size = static_cast<uint32_t>(*v);
    }
    if (const YAML::Node n = h["header_table_size"]) {
      if (auto v = detail::read_size(w.key("header_table_size"), n, 0, 1u << 20)) c.header_table_size = static_cast<uint32_t>(*v);
    }
    if (const YAML::Node n = h["initial_window_size"]) {
      if (auto v = detail::read_size(w.key("initial_window_size"), n, 1024, (1u << 31) - 1)) c.initial_window_size = static_cast<uint32_t>(*v);
    }
    if (const YAML::Node n = h["max_frame_size"]) {
      if (auto v = detail::read_size(w.key("max_frame_size"), n, 16384, (1u << 24) - 1)) c.max_frame_size = static_cast<uint32_t>(*v);
    }
    field_int(w, h, "max_continuations", c.max_continuations, 1, 1000);
    field_int(w, h, "max_resets_per_second", c.max_resets_per_second, 1, 1'000'000);
    field_int(w, h, "max_control_frames_per_second", c.max_control_frames_per_second, 1, 1'000'000);
    field_int(w, h, "max_requests_per_connection", c.max_requests_per_connection, 1, UINT32_MAX);
    field_duration(w, h, "idle_timeout", c.idle_timeout, kPositive);
  }

  void load_upstream_tls(const Where& w, const YAML::Node& t, UpstreamTlsConfig& tls) {
    if (!expect_map(w, t)) return;
    check_keys(w, t, {"enabled", "sni", "verify", "ca_file", "cert", "key", "session_reuse"});
    tls.enabled = true;
    field(w, t, "enabled", tls.enabled);
    field(w, t, "sni", tls.sni);
    field(w, t, "verify", tls.verify);
    field(w, t, "ca_file", tls.ca_file);
    field(w, t, "cert", tls.cert_file);
    field(w, t, "key", tls.key_file);
    field(w, t, "session_reuse", tls.session_reuse);
    tls.ca_file = relative_to_config(tls.ca_file);
    tls.cert_file = relative_to_config(tls.cert_file);
    tls.key_file = relative_to_config(tls.key_file);
    if (tls.cert_file.empty() != tls.key_file.empty()) {
      w.error(t, "a client certificate needs both \"cert\" and \"key\"");
    }
  }

  void load_upstreams(const YAML::Node& list) {
    Where w(diag_, "", "upstreams");
    if (!expect_list(w, list)) return;
    size_t i = 0;
    for (auto it = list.begin(); it != list.end(); ++it, ++i) {
      const YAML::Node& item = *it;
      if (!expect_map(w.index(i), item)) continue;
      UpstreamConfig u;
      u.source = w.source(item);
      Where uw = named_item(item, "upstream", i, u.name);
      check_keys(uw, item, {"name", "nodes", "protocol", "tls", "h2_max_streams_per_connection", "keepalive",
                            "timeouts", "retries", "health", "balancer", "lb", "hash_key", "ewma_decay",
                            "retry_on_statuses", "retry_on_timeout", "retry_budget", "prefer_local_zone",
                            "resolve_interval", "nodes_file"});
      load_nodes(uw, item, u);
      if (const YAML::Node p = item["protocol"]) {
        if (auto s = detail::read_string(uw.key("protocol"), p)) {
          if (*s == "http1" || *s == "http/1.1") u.protocol = UpstreamProtocol::http1;
          else if (*s == "h2c") u.protocol = UpstreamProtocol::h2c;
          else if (*s == "h2") u.protocol = UpstreamProtocol::h2;
          else uw.key("protocol").error(p, quote(*s) + " is not a protocol: use \"http1\", \"h2c\" or \"h2\"");
        }
      }
      if (const YAML::Node t = item["tls"]) load_upstream_tls(uw.key("tls"), t, u.tls);
      if (u.protocol == UpstreamProtocol::h2) u.tls.enabled = true;
      if (u.protocol == UpstreamProtocol::h2c && u.tls.enabled) {
        uw.key("protocol").error(item["protocol"], "\"h2c\" is cleartext: use \"h2\" with tls");
      }
      field_int(uw, item, "h2_max_streams_per_connection", u.h2_max_streams_per_connection, 1, 100'000);
      if (const YAML::Node k = item["keepalive"]) {
        Where kw = uw.key("keepalive");
        if (expect_map(kw, k)) {
          check_keys(kw, k, {"max_idle", "idle_timeout", "max_requests"});
          field_int(kw, k, "max_idle", u.keepalive_max_idle, 0, 100'000);
          field_duration(kw, k, "idle_timeout", u.keepalive_idle_timeout, kPositive);
          field_int(kw, k, "max_requests", u.keepalive_max_requests, 1, UINT32_MAX);
        }
      }
      if (const YAML::Node t = item["timeouts"]) {
        Where tw = uw.key("timeouts");
        if (expect_map(tw, t)) {
          check_keys(tw, t, {"connect", "send", "read"});
          field_duration(tw, t, "connect", u.connect_timeout, kPositive);
          field_duration(tw, t, "send", u.send_timeout, kPositive);
          field_duration(tw, t, "read", u.read_timeout, kPositive);
        }
      }
      field_int(uw, item, "retries", u.retries, 0, 10);
      if (const YAML::Node h = item["health"]) detail::load_health(uw.key("health"), h, u);
      load_upstream_balancing(uw, item, u.balancing);
      detail::load_resolve_interval(uw, item, u);
      for (const UpstreamConfig& other : cfg_.upstreams) {
        if (!u.name.empty() && other.name == u.name) {
          uw.error(item["name"], "name is already used by the upstream at line " +
                                     std::to_string(other.source.line));
        }
      }
      cfg_.upstreams.push_back(std::move(u));
    }
  }

  void load_nodes(const Where& uw, const YAML::Node& item, UpstreamConfig& u) {
    const YAML::Node list = item["nodes"];
    Where w = uw.key("nodes");
    if (const YAML::Node f = item["nodes_file"]) {
      if (list) {
        uw.error(f, "give the nodes either under \"nodes\" or in \"nodes_file\", not both");
        return;
      }
      load_nodes_file(uw.key("nodes_file"), f, u);
      return;
    }
    if (!list) {
      uw.error(item, "\"nodes\" (or \"nodes_file\") is required (at least one node)");
      return;
    }
    if (!expect_list(w, list)) return;
    if (list.size() == 0) {
      w.error(list, "at least one node is required");
      return;
    }
    // Each node's identity (an SRV name, or host and port), to find one listed twice: a set, since
    // comparing every pair was a quarter of reloading a 2,000-node upstream.
    std::unordered_set<std::string> seen;
    seen.reserve(list.size());
    u.nodes.reserve(u.nodes.size() + list.size());
    size_t i = 0;
    for (auto it = list.begin(); it != list.end(); ++it, ++i) {
      const YAML::Node& n = *it;
      // The node's place ("nodes[12]"), made when a message needs it: most nodes are fine.
      const auto nw = [&] { return w.index(i); };
      UpstreamNodeConfig node;
      node.source = w.source(n);
      if (n.IsScalar() && n.Scalar().starts_with(detail::kSrvScheme)) {
        node.host = n.Scalar().substr(detail::kSrvScheme.size());
        node.srv = true;
      } else if (n.IsScalar()) {
        std::optional<int64_t> port;
        std::string why;
        if (!parse_host_port(n.Scalar(), node.host, port, why)) {
          nw().error(n, quote(n.Scalar()) + " " + why);
          continue;
        }
        if (port) node.port = static_cast<uint16_t>(*port);
      } else if (n.IsMap()) {
        const Where at = nw();
        check_keys(at, n, {"host", "service", "port", "weight", "tags", "zone"});
        if (n["service"]) {
          // SRV records give the targets' ports and weights.
          if (n["host"] || n["port"] || n["weight"]) {
            at.error(n, "\"service\" (an SRV name) gives the nodes' hosts, ports and weights: leave out host, port "
                        "and weight");
            continue;
          }
          field(at, n, "service", node.host);
          node.srv = true;
        } else if (!n["host"]) {
          at.error(n, "\"host\" (or \"service\", an SRV name) is required");
          continue;
        }
        if (!node.srv) field(at, n, "host", node.host);
        node.host = std::string(strip_brackets(node.host));
        field_int(at, n, "port", node.port, 1, 65535);
        field_int(at, n, "weight", node.weight, 1, 10'000);
        if (const YAML::Node t = n["tags"]) load_node_tags(at.key("tags"), t, node);
        load_node_zone(at, n, node);
      } else {
        nw().error(n, "expected \"host:port\" or a mapping with host, port and weight, got " + describe(n));
        continue;
      }
      if (std::string why = detail::node_host_error(node); !why.empty()) {
        nw().error(n, why);
        continue;
      }
      if (!seen.insert(detail::node_identity(node)).second) {
        nw().error(n, "node " + node.host + ":" + std::to_string(node.port) + " is listed twice (use weight instead)");
      }
      u.nodes.push_back(std::move(node));
    }
    // The balancer keeps each tag's nodes as a 64-bit set (UpstreamPool::pick).
    bool tagged = std::any_of(u.nodes.begin(), u.nodes.end(), [](const auto& n) { return !n.tags.empty(); });
    if (tagged && u.nodes.size() > 64) w.error(list, "an upstream with tagged nodes may have at most 64 nodes");
  }

  // `nodes_file: path`: the nodes come from that file (node_file.cc), its errors at its lines.
  void load_nodes_file(const Where& w, const YAML::Node& f, UpstreamConfig& u) {
    const std::optional<std::string> path = detail::read_string(w, f);
    if (!path) return;
    if (path->empty()) {
      w.error(f, "a file path is required");
      return;
    }
    u.nodes_file = relative_to_config(*path);
    std::vector<ConfigError> errors;
    if (read_node_file(u.nodes_file, u.nodes, errors)) return;
    for (ConfigError& e : errors) {
      // "cannot read" belongs to the config's line that names the file.
      if (e.line == 0 && e.message.starts_with("cannot read")) {
        w.error(f, u.nodes_file + ": " + e.message);
      } else {
        e.message = detail::item_name("upstream", u.name) + ": " + e.message;
        diag_.add_elsewhere(std::move(e));
      }
    }
  }

  // A node's tags: short names of letters, digits, '.', '_' and '-'.
  void load_node_tags(const Where& w, const YAML::Node& list, UpstreamNodeConfig& node) {
    auto tags = detail::read_string_list(w, list);
    if (!tags) return;
    for (auto& [tag, item] : *tags) {
      if (!detail::valid_tag(tag)) {
        w.error(item, quote(tag) + " is not a tag (" + std::string(detail::kTagRule) + ")");
        continue;
      }
      node.tags.push_back(std::move(tag));
    }
  }

  Diagnostics& diag_;
  Config& cfg_;
  int root_line_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

LoadResult load_config_string(const std::string& yaml, const std::string& file) {
  Diagnostics diag(file);
  auto cfg = std::make_shared<Config>();
  cfg->file = file;
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(yaml);
    if (docs.size() > 1) {
      diag.add(detail::line_of(docs[1]), "only one YAML document is allowed per file");
    }
    Loader(diag, *cfg).load(docs.empty() ? YAML::Node() : docs.front());
  } catch (const YAML::Exception& e) {
    // Syntax errors stop yaml-cpp at the first one; report just that.
    diag = Diagnostics(file);
    diag.add(e.mark.is_null() ? 0 : e.mark.line + 1, "YAML syntax error: " + e.msg);
  } catch (const std::exception& e) {
    diag.add(0, std::string("cannot load: ") + e.what());
  }
  LoadResult result;
  if (diag.empty()) {
    result.warnings = detail::find_warnings(*cfg);
    result.config = std::move(cfg);
  } else {
    result.errors = diag.take_sorted();
  }
  return result;
}

LoadResult load_config_file(const std::string& path) {
  std::string text, error;
  if (!read_small_file(path, SIZE_MAX, text, error)) {
    LoadResult result;
    result.errors.push_back(ConfigError{path, 0, std::move(error)});
    return result;
  }
  return load_config_string(text, path);
}

}  // namespace turnpike::config
