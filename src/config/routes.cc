// Loading the `routes` list: match conditions, the target (upstream or static response) and the
// header rules, with every reference to a listener or upstream checked.
#include <algorithm>

#include "sections.h"
#include "turnpike/common/strings.h"
#include "turnpike/http/types.h"
#include "turnpike/router/router.h"

namespace turnpike::config::detail {

// ---------------------------------------------------------------------------------------------
// Header names and values
// ---------------------------------------------------------------------------------------------

bool is_token(std::string_view s) { return http::is_token(s); }

namespace {

// Checks a header name used in a rule; reports and returns false when it cannot be used.
bool check_header_name(const Where& w, const YAML::Node& at, std::string_view name) {
  if (!is_token(name)) {
    w.error(at, quote(name) + " is not a valid header name");
    return false;
  }
  if (http::is_proxy_managed_field(name)) {
    w.error(at, quote(name) + " is a hop-by-hop or framing header managed by the proxy");
    return false;
  }
  return true;
}

std::optional<std::string> read_field_value(const Where& w, const YAML::Node& n) {
  std::optional<std::string> v = read_string(w, n);
  if (v && !http::is_safe_field_value(*v)) {
    w.error(n, quote(*v) + " contains a control character (CR, LF, NUL, ...)");
    return std::nullopt;
  }
  return v;
}

// A `{name: value}` mapping of header fields. Names that differ only in case are the same field,
// so they are reported as duplicates when `unique_names`.
std::vector<std::pair<std::string, std::string>> read_header_map(const Where& w,
                                                                 const YAML::Node& map,
                                                                 bool unique_names) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!expect_map(w, map)) return out;
  std::vector<std::string> seen;  // exact spellings, for duplicate keys in any case
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node k = it->first;  // a copy: it-> points into a temporary
    if (!k.IsScalar()) {
      w.error(k, "a header name must be a string, got " + describe(k));
      continue;
    }
    const std::string& name = k.Scalar();
    bool duplicate = std::any_of(seen.begin(), seen.end(), [&](const std::string& s) {
      return unique_names ? iequals(s, name) : s == name;
    });
    seen.push_back(name);
    if (duplicate) {
      w.error(k, "header " + quote(name) + " appears more than once");
      continue;
    }
    if (!check_header_name(w, k, name)) continue;
    if (std::optional<std::string> v = read_field_value(w.key(name), it->second)) {
      out.emplace_back(name, std::move(*v));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Lists that narrow a route
// ---------------------------------------------------------------------------------------------

// A route's lists (listeners, hosts, paths, methods, header conditions) each narrow what it
// serves, and leaving one out means "all". An empty list would mean either nothing (a route that
// never matches) or, read loosely, everything: a route meant for nothing served everywhere. It
// is refused so that "all" has one spelling, the key left out.
bool refuse_empty(const Where& w, const YAML::Node& n, std::string_view all) {
  if (!n.IsSequence() || n.size() != 0) return false;
  w.error(n, "an empty list is not allowed; leave the key out for " + std::string(all));
  return true;
}

// "/users/:id" is a common parameter spelling elsewhere; here it would match the literal ":id".
bool check_colon_param(const Where& w, const YAML::Node& at, std::string_view path) {
  size_t pos = 0;
  while ((pos = path.find("/:", pos)) != std::string_view::npos) {
    size_t end = path.find('/', pos + 1);
    std::string_view name = path.substr(pos + 2, end == std::string_view::npos ? end : end - pos - 2);
    if (!name.empty()) {
      w.error(at, "path " + quote(path) + ": \":" + std::string(name) +
                      "\" would match literally; write \"{" + std::string(name) + "}\" for a parameter");
      return false;
    }
    pos += 2;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Route parts
// ---------------------------------------------------------------------------------------------

class RouteLoader {
 public:
  RouteLoader(Diagnostics& diag, Config& cfg) : diag_(diag), cfg_(cfg) {}

  void load(const YAML::Node& list) {
    Where w(diag_, "", "routes");
    if (!expect_list(w, list)) return;
    size_t i = 0;
    for (auto it = list.begin(); it != list.end(); ++it, ++i) load_route(w, *it, i);
  }

 private:
  void load_route(const Where& list_w, const YAML::Node& item, size_t index) {
    if (!expect_map(list_w.index(index), item)) return;
    RouteConfig r;
    r.source = list_w.source(item);
    r.rule.route_index = static_cast<uint32_t>(index);
    r.name = "route#" + std::to_string(index + 1);
    Where w(diag_, item_name("route", r.name));
    if (const YAML::Node n = item["name"]) {
      if (std::optional<std::string> s = read_string(w.key("name"), n)) {
        if (valid_name(*s)) {
          r.name = *s;
          w = w.item(item_name("route", r.name));
        } else {
          w.key("name").error(n, quote(*s) + " " + std::string(kNameRule));
        }
      }
    }
    check_keys(w, item,
               {"name", "listeners", "priority", "match", "upstream", "respond",
                "request_headers", "response_headers", "plugins"});
    for (const RouteConfig& other : cfg_.routes) {
      if (other.name == r.name) {
        w.error(item["name"] ? item["name"] : item,
                "name is already used by the route at line " + std::to_string(other.source.line));
      }
    }

    load_listeners(w, item, r);
    field_int(w, item, "priority", r.rule.priority, INT32_MIN, INT32_MAX);
    r.rule.paths = {"/*"};
    if (const YAML::Node m = item["match"]) load_match(w.key("match"), m, r.rule);
    load_target(w, item, r);
    if (const YAML::Node h = item["request_headers"]) {
      load_header_ops(w.key("request_headers"), h, r.request_headers);
    }
    if (const YAML::Node h = item["response_headers"]) {
      load_header_ops(w.key("response_headers"), h, r.response_headers);
    }
    if (const YAML::Node p = item["plugins"]) load_plugins(w.key("plugins"), p, r.plugins);
    cfg_.routes.push_back(std::move(r));
  }

  void load_listeners(const Where& w, const YAML::Node& item, RouteConfig& r) {
    const YAML::Node n = item["listeners"];
    if (!n || refuse_empty(w.key("listeners"), n, "every listener")) return;
    auto names = read_string_list(w.key("listeners"), n);
    if (!names) return;
    for (auto& [name, at] : *names) {
      bool known = std::any_of(cfg_.listeners.begin(), cfg_.listeners.end(),
                               [&](const ListenerConfig& l) { return l.name == name; });
      if (!known) {
        w.error(at, "listener " + quote(name) + " is not defined");
      } else if (std::find(r.listeners.begin(), r.listeners.end(), name) == r.listeners.end()) {
        r.listeners.push_back(name);
      }
    }
  }

  void load_match(const Where& w, const YAML::Node& m, router::RouteRule& rule) {
    if (!expect_map(w, m)) return;
    check_keys(w, m, {"hosts", "paths", "methods", "headers"});
    std::string why;
    if (const YAML::Node n = m["hosts"]; n && !refuse_empty(w.key("hosts"), n, "any host")) {
      if (auto hosts = read_string_list(w.key("hosts"), n)) {
        for (auto& [text, at] : *hosts) {
          std::string host = to_lower_copy(text);
          if (!router::validate_host(host, why)) {
            w.error(at, why);  // the router names the host and the rule it breaks
          } else if (std::find(rule.hosts.begin(), rule.hosts.end(), host) == rule.hosts.end()) {
            rule.hosts.push_back(std::move(host));
          }
        }
      }
    }
    if (const YAML::Node n = m["paths"]; n && !refuse_empty(w.key("paths"), n, "every path")) {
      rule.paths.clear();
      if (auto paths = read_string_list(w.key("paths"), n)) {
        for (auto& [path, at] : *paths) {
          if (!check_colon_param(w.key("paths"), at, path)) continue;
          if (!router::validate_path(path, why)) {
            w.error(at, why);
          } else if (std::find(rule.paths.begin(), rule.paths.end(), path) == rule.paths.end()) {
            rule.paths.push_back(path);
          }
        }
      }
    }
    if (const YAML::Node n = m["methods"]; n && !refuse_empty(w.key("methods"), n, "every method")) {
      if (auto methods = read_string_list(w.key("methods"), n)) {
        for (auto& [name, at] : *methods) {
          http::Method method = http::parse_method(name);
          if (method == http::Method::other) {
            std::string msg = "unknown method " + quote(name);
            std::string upper(name);
            for (char& c : upper) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c);
            if (http::parse_method(upper) != http::Method::other) {
              msg += " (methods are case-sensitive: " + quote(upper) + ")";
            } else {
              msg += " (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH)";
            }
            w.key("methods").error(at, msg);
          } else {
            rule.method_mask |= http::method_bit(method);
          }
        }
      }
    }
    if (const YAML::Node n = m["headers"]; n && !refuse_empty(w.key("headers"), n, "no header condition")) load_header_conditions(w.key("headers"), n, rule);
  }

  void load_header_conditions(const Where& w, const YAML::Node& list, router::RouteRule& rule) {
    if (!expect_list(w, list)) return;
    size_t i = 0;
    for (auto it = list.begin(); it != list.end(); ++it, ++i) {
      const YAML::Node& c = *it;
      Where cw = w.index(i);
      if (!expect_map(cw, c)) continue;
      check_keys(cw, c, {"name", "value", "prefix", "present"});
      router::HeaderCondition cond;
      const YAML::Node name = c["name"];
      if (!name) {
        cw.error(c, "\"name\" is required");
        continue;
      }
      std::optional<std::string> s = read_string(cw.key("name"), name);
      if (!s) continue;
      if (!is_token(*s)) {
        cw.key("name").error(name, quote(*s) + " is not a valid header name");
        continue;
      }
      cond.name = to_lower_copy(*s);
      int ops = (c["value"] ? 1 : 0) + (c["prefix"] ? 1 : 0) + (c["present"] ? 1 : 0);
      if (ops != 1) {
        cw.error(c, "needs exactly one of \"value\", \"prefix\" or \"present\"");
        continue;
      }
      if (const YAML::Node v = c["value"]) {
        auto value = read_field_value(cw.key("value"), v);
        if (!value) continue;
        cond.op = router::HeaderCondition::Op::equals;
        cond.value = std::move(*value);
      } else if (const YAML::Node p = c["prefix"]) {
        auto value = read_field_value(cw.key("prefix"), p);
        if (!value) continue;
        cond.op = router::HeaderCondition::Op::prefix;
        cond.value = std::move(*value);
      } else {
        auto present = read_bool(cw.key("present"), c["present"]);
        if (!present) continue;
        cond.op = *present ? router::HeaderCondition::Op::present
                           : router::HeaderCondition::Op::absent;
      }
      rule.headers.push_back(std::move(cond));
    }
  }

  // Exactly one of `upstream` (proxy) or `respond` (static answer).
  void load_target(const Where& w, const YAML::Node& item, RouteConfig& r) {
    const YAML::Node up = item["upstream"];
    const YAML::Node resp = item["respond"];
    if (up && resp) {
      w.error(resp, "\"upstream\" and \"respond\" cannot both be set");
    } else if (!up && !resp) {
      w.error(item, "needs \"upstream\" (to proxy) or \"respond\" (to answer directly)");
    }
    if (up) {
      if (std::optional<std::string> name = read_string(w.key("upstream"), up)) {
        if (!cfg_.find_upstream(*name)) {
          w.error(up, "upstream " + quote(*name) + " is not defined");
        }
        r.upstream = std::move(*name);
      }
    }
    if (resp) load_respond(w.key("respond"), resp, r);
  }

  void load_respond(const Where& w, const YAML::Node& n, RouteConfig& r) {
    if (!expect_map(w, n)) return;
    check_keys(w, n, {"status", "headers", "body"});
    StaticResponse s;
    // 1xx are interim responses (RFC 9110 §15.2), never a final answer.
    field_int(w, n, "status", s.status, 200, 599);
    if (const YAML::Node h = n["headers"]) {
      s.headers = read_header_map(w.key("headers"), h, false);
    }
    field(w, n, "body", s.body);
    // RFC 9110 §15.3.5, §15.4.5: 204 and 304 responses have no content.
    if ((s.status == 204 || s.status == 304) && !s.body.empty()) {
      w.error(n["body"], "a " + std::to_string(s.status) + " response cannot have a body");
    }
    r.respond = std::move(s);
  }

  void load_header_ops(const Where& w, const YAML::Node& n, HeaderOps& ops) {
    if (!expect_map(w, n)) return;
    check_keys(w, n, {"set", "add", "remove"});
    if (const YAML::Node s = n["set"]) ops.set = read_header_map(w.key("set"), s, true);
    if (const YAML::Node a = n["add"]) ops.add = read_header_map(w.key("add"), a, false);
    if (const YAML::Node r = n["remove"]) {
      Where rw = w.key("remove");
      if (auto names = read_string_list(rw, r)) {
        for (auto& [name, at] : *names) {
          if (!check_header_name(rw, at, name)) continue;
          bool also_set = std::any_of(ops.set.begin(), ops.set.end(),
                                      [&](const auto& kv) { return iequals(kv.first, name); });
          if (also_set) {
            rw.error(at, quote(name) + " is both set and removed");
            continue;
          }
          ops.remove.push_back(name);
        }
      }
    }
  }

  Diagnostics& diag_;
  Config& cfg_;
};

}  // namespace

void load_routes(Diagnostics& diag, const YAML::Node& routes, Config& cfg) {
  RouteLoader(diag, cfg).load(routes);
}

}  // namespace turnpike::config::detail
