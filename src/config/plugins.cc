// Loading the plugin sections: `plugins:` maps (global, listener, route, consumer), `consumers`,
// `plugin_paths`, `lua`, `shared_dicts`, and `rate_limits` and `cluster` (the limit plugins'
// table and node count). A plugin's conf is read as plain data here (lua::ConfValue, with
// lines); its schema is checked when the snapshot is built, where the plugin's code is loaded
// (proxy/plugins.cc).
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "sections.h"

namespace turnpike::config::detail {

namespace {

// A YAML scalar as a conf value: plain scalars that read as booleans or numbers become those
// (as a YAML 1.2 core schema reader would); quoted ones stay strings ("8080" is a string).
lua::ConfValue scalar_value(const YAML::Node& n) {
  lua::ConfValue v;
  v.line = line_of(n);
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") {  // quoted
    v.value = s;
    return v;
  }
  if (s == "true" || s == "True" || s == "TRUE") {
    v.value = true;
  } else if (s == "false" || s == "False" || s == "FALSE") {
    v.value = false;
  } else if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    v.value = std::monostate{};
  } else {
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    bool numeric = end == s.c_str() + s.size() && std::isfinite(d) &&
                   s.find_first_not_of("0123456789+-.eE") == std::string::npos;
    if (numeric) v.value = d; else v.value = s;
  }
  return v;
}

// Deep enough for any real conf; a deeper document is refused rather than recursed into.
constexpr int kMaxConfDepth = 32;

lua::ConfValue read_value(const Where& w, const YAML::Node& n, int depth) {
  lua::ConfValue v;
  v.line = line_of(n);
  if (depth > kMaxConfDepth) {
    w.error(n, "nested more than " + std::to_string(kMaxConfDepth) + " levels deep");
    return v;
  }
  if (n.IsScalar()) return scalar_value(n);
  if (n.IsSequence()) {
    lua::ConfList list;
    for (size_t i = 0; i < n.size(); ++i) list.push_back(read_value(w.index(i), n[i], depth + 1));
    v.value = std::move(list);
  } else if (n.IsMap()) {
    lua::ConfMap map;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const YAML::Node k = it->first;
      if (!k.IsScalar()) {
        w.error(k, "a key must be a plain string, got " + describe(k));
        continue;
      }
      map.emplace_back(k.Scalar(), read_value(w.key(k.Scalar()), it->second, depth + 1));
    }
    v.value = std::move(map);
  }
  return v;
}

bool valid_plugin_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

void load_plugins(const Where& w, const YAML::Node& n, PluginList& out) {
  if (n.IsNull()) return;
  if (!expect_map(w, n)) return;
  std::vector<std::string> seen;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const YAML::Node k = it->first;
    if (!k.IsScalar()) {
      w.error(k, "a plugin name must be a plain string, got " + describe(k));
      continue;
    }
    PluginConfig p;
    p.name = k.Scalar();
    if (std::find(seen.begin(), seen.end(), p.name) != seen.end()) {
      w.error(k, "plugin " + quote(p.name) + " appears more than once");
      continue;
    }
    seen.push_back(p.name);
    p.source = w.source(k);
    if (!valid_plugin_name(p.name)) {
      w.error(k, quote(p.name) + " is not a plugin name (lower-case letters, digits, '-' and '_')");
      continue;
    }
    const YAML::Node conf = it->second;
    Where pw = w.key(p.name);
    if (conf.IsNull()) {
      p.conf.value = lua::ConfMap{};  // `request-id:` alone: every default
      p.conf.line = p.source.line;
    } else if (!conf.IsMap()) {
      pw.error(conf, "a plugin's conf must be a mapping (or empty), got " + describe(conf));
      continue;
    } else {
      p.conf = read_value(pw, conf, 0);
    }
    out.items.push_back(std::move(p));
  }
}

void load_consumers(Diagnostics& diag, const YAML::Node& n, Config& cfg) {
  Where list_w(diag, "", "consumers");
  if (!expect_list(list_w, n)) return;
  for (size_t i = 0; i < n.size(); ++i) {
    const YAML::Node item = n[i];
    if (!expect_map(list_w.index(i), item)) continue;
    ConsumerConfig c;
    c.source = list_w.source(item);
    Where w(diag, "consumer #" + std::to_string(i + 1));
    check_keys(w, item, {"username", "plugins"});
    if (const YAML::Node u = item["username"]) {
      if (std::optional<std::string> s = read_string(w.key("username"), u)) {
        if (valid_name(*s)) {
          c.username = *s;
          w = w.item(item_name("consumer", c.username));
        } else {
          w.key("username").error(u, quote(*s) + " " + std::string(kNameRule));
        }
      }
    } else {
      w.error(item, "username is required");
    }
    for (const ConsumerConfig& other : cfg.consumers) {
      if (!c.username.empty() && other.username == c.username) {
        w.error(item["username"], "username is already used by the consumer at line " +
                                      std::to_string(other.source.line));
      }
    }
    if (const YAML::Node p = item["plugins"]) load_plugins(w.key("plugins"), p, c.plugins);
    cfg.consumers.push_back(std::move(c));
  }
}

void load_lua(Diagnostics& diag, const YAML::Node& n, LuaConfig& lua,
              const std::function<std::string(const std::string&)>& relative) {
  Where w(diag, "", "lua");
  if (!expect_map(w, n)) return;
  lua.source = w.source(n);
  check_keys(w, n, {"plugins_dir", "memory_limit", "instruction_budget", "phase_timeout", "max_body_buffer"});
  if (const YAML::Node d = n["plugins_dir"]) {
    if (std::optional<std::string> s = read_string(w.key("plugins_dir"), d)) lua.plugins_dir = relative(*s);
  }
  field_size(w, n, "memory_limit", lua.memory_limit, 4u << 20, uint64_t{16} << 30);
  field_int(w, n, "instruction_budget", lua.instruction_budget, 10'000, int64_t{1} << 40);
  field_duration(w, n, "phase_timeout", lua.phase_timeout, Duration{10});
  field_size(w, n, "max_body_buffer", lua.max_body_buffer, 1, uint64_t{1} << 30);
}

void load_plugin_paths(Diagnostics& diag, const YAML::Node& n, LuaConfig& lua,
                       const std::function<std::string(const std::string&)>& relative) {
  Where w(diag, "", "plugin_paths");
  auto dirs = read_string_list(w, n);
  if (!dirs) return;
  for (auto& [dir, at] : *dirs) {
    if (dir.empty()) {
      w.error(at, "an empty directory name");
      continue;
    }
    lua.plugin_paths.push_back(relative(dir));
  }
}

void load_shared_dicts(Diagnostics& diag, const YAML::Node& n, Config& cfg) {
  Where w(diag, "", "shared_dicts");
  if (!expect_map(w, n)) return;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const YAML::Node k = it->first;
    if (!k.IsScalar()) {
      w.error(k, "a dictionary name must be a plain string, got " + describe(k));
      continue;
    }
    SharedDictConfig d;
    d.name = k.Scalar();
    d.source = w.source(k);
    if (!valid_plugin_name(d.name)) {
      w.error(k, quote(d.name) + " is not a dictionary name (lower-case letters, digits, '-' and '_')");
      continue;
    }
    std::optional<uint64_t> size = read_size(w.key(d.name), it->second, 64u << 10, uint64_t{64} << 30);
    if (!size) continue;
    d.size = *size;
    cfg.shared_dicts.push_back(std::move(d));
  }
}

void load_rate_limits(Diagnostics& diag, const YAML::Node& n, RateLimitConfig& limits) {
  Where w(diag, "", "rate_limits");
  if (!expect_map(w, n)) return;
  check_keys(w, n, {"table_size"});
  field_size(w, n, "table_size", limits.table_size, 64u << 10, uint64_t{64} << 30);
}

void load_cluster(Diagnostics& diag, const YAML::Node& n, ClusterConfig& cluster) {
  Where w(diag, "", "cluster");
  if (!expect_map(w, n)) return;
  check_keys(w, n, {"nodes"});
  field_int(w, n, "nodes", cluster.nodes, 1, 100'000);
}

}  // namespace turnpike::config::detail
