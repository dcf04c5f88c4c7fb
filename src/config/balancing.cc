// The load-balancing keys of an upstream (balancer, hash_key, ewma_decay, retry_on_*,
// retry_budget, prefer_local_zone), the node's `zone` and the gateway's top-level
// `zone`. Kept apart from loader.cc so the upstream section there only names the keys.
#include <algorithm>

#include "sections.h"

namespace turnpike::config {

std::string_view to_string(BalancerKind k) noexcept {
  switch (k) {
    case BalancerKind::round_robin: return "round_robin";
    case BalancerKind::least_request: return "least_request";
    case BalancerKind::ewma: return "ewma";
    case BalancerKind::consistent_hash: return "consistent_hash";
    case BalancerKind::random: return "random";
  }
  return "unknown";
}

std::string_view to_string(HashKeySource k) noexcept {
  switch (k) {
    case HashKeySource::remote_addr: return "remote_addr";
    case HashKeySource::header: return "header";
    case HashKeySource::cookie: return "cookie";
    case HashKeySource::query_arg: return "query";
    case HashKeySource::route_param: return "param";
    case HashKeySource::consumer: return "consumer";
  }
  return "unknown";
}

namespace detail {

namespace {

constexpr Duration kPositive{1};

// Zone names: short, like tags.
bool valid_zone(std::string_view z) { return valid_tag(z); }

void load_balancer(const Where& w, const YAML::Node& n, BalancerKind& out) {
  auto s = read_string(w, n);
  if (!s) return;
  for (auto k : {BalancerKind::round_robin, BalancerKind::least_request, BalancerKind::ewma,
                 BalancerKind::consistent_hash, BalancerKind::random}) {
    if (*s == to_string(k)) {
      out = k;
      return;
    }
  }
  if (*s == "roundrobin" || *s == "rr") out = BalancerKind::round_robin;
  else if (*s == "least_conn" || *s == "least_requests") out = BalancerKind::least_request;
  else if (*s == "chash" || *s == "hash" || *s == "maglev") out = BalancerKind::consistent_hash;
  else w.error(n, quote(*s) + " is not a balancer: use round_robin, least_request, ewma, consistent_hash or random");
}

// "remote_addr", "consumer", or "<source>:<name>" with header, cookie, query or param.
void load_hash_key(const Where& w, const YAML::Node& n, HashKeyConfig& out) {
  auto s = read_string(w, n);
  if (!s) return;
  const size_t colon = s->find(':');
  const std::string_view kind = std::string_view(*s).substr(0, colon);
  const std::string name = colon == std::string::npos ? std::string() : s->substr(colon + 1);
  const std::string bad = quote(*s) + " is not a hash key: use remote_addr, consumer, header:<name>, "
                          "cookie:<name>, query:<name> or param:<name>";
  if (kind == "remote_addr" || kind == "consumer") {
    if (colon != std::string::npos) return w.error(n, bad);
    out.source = kind == "consumer" ? HashKeySource::consumer : HashKeySource::remote_addr;
    out.name.clear();
    return;
  }
  if (kind == "header") out.source = HashKeySource::header;
  else if (kind == "cookie") out.source = HashKeySource::cookie;
  else if (kind == "query") out.source = HashKeySource::query_arg;
  else if (kind == "param") out.source = HashKeySource::route_param;
  else return w.error(n, bad);
  if (name.empty() || name.size() > 256) return w.error(n, bad);
  if (out.source == HashKeySource::header && !is_token(name)) return w.error(n, quote(name) + " is not a header name");
  out.name = name;
  if (out.source == HashKeySource::header) std::transform(out.name.begin(), out.name.end(), out.name.begin(), ::tolower);
}

void load_statuses(const Where& w, const YAML::Node& n, std::vector<int>& out) {
  if (!expect_list(w, n)) return;
  for (size_t i = 0; i < n.size(); ++i) {
    if (auto v = read_int(w.index(i), n[i], 400, 599)) {
      if (std::find(out.begin(), out.end(), *v) == out.end()) out.push_back(static_cast<int>(*v));
    }
  }
}

}  // namespace

void load_upstream_balancing(const Where& uw, const YAML::Node& item, UpstreamBalancingConfig& b) {
  // `lb` is the short spelling of `balancer`.
  if (item["balancer"] && item["lb"]) uw.key("lb").error(item["lb"], "\"lb\" and \"balancer\" are the same key: use one");
  if (const YAML::Node n = item["balancer"]) load_balancer(uw.key("balancer"), n, b.balancer);
  else if (const YAML::Node l = item["lb"]) load_balancer(uw.key("lb"), l, b.balancer);
  if (const YAML::Node n = item["hash_key"]) {
    load_hash_key(uw.key("hash_key"), n, b.hash_key);
    if (b.balancer != BalancerKind::consistent_hash) {
      uw.key("hash_key").error(n, "only the consistent_hash balancer uses a hash key");
    }
  }
  field_duration(uw, item, "ewma_decay", b.ewma_decay, kPositive);
  if (const YAML::Node n = item["retry_on_statuses"]) load_statuses(uw.key("retry_on_statuses"), n, b.retry_on_statuses);
  field(uw, item, "retry_on_timeout", b.retry_on_timeout);
  if (const YAML::Node n = item["retry_budget"]) {
    Where bw = uw.key("retry_budget");
    if (expect_map(bw, n)) {
      check_keys(bw, n, {"percent", "min_per_second"});
      field_int(bw, n, "percent", b.retry_budget_percent, 0, 100);
      field_int(bw, n, "min_per_second", b.retry_budget_min_per_second, 0, 1'000'000);
    }
  }
  if (const YAML::Node n = item["prefer_local_zone"]) {
    Where zw = uw.key("prefer_local_zone");
    if (n.IsMap()) {
      check_keys(zw, n, {"min_usable", "min_percent"});
      b.prefer_local_zone = true;
      field_int(zw, n, "min_usable", b.local_zone_min_usable, 0, 1'000'000);
      field_int(zw, n, "min_percent", b.local_zone_min_percent, 0, 100);
    } else if (auto v = read_bool(zw, n)) {
      b.prefer_local_zone = *v;
    }
  }
}

void load_node_zone(const Where& nw, const YAML::Node& n, UpstreamNodeConfig& node) {
  const YAML::Node z = n["zone"];
  if (!z) return;
  field(nw, n, "zone", node.zone);
  if (z.IsScalar() && !valid_zone(node.zone)) {
    nw.key("zone").error(z, quote(node.zone) + " is not a zone (1 to 64 letters, digits, '.', '_' or '-')");
    node.zone.clear();
  }
}

void load_gateway_zone(Diagnostics& diag, const YAML::Node& root, Config& cfg) {
  const YAML::Node z = root["zone"];
  if (!z) return;
  Where top(diag, "");
  field(top, root, "zone", cfg.zone);
  if (z.IsScalar() && !valid_zone(cfg.zone)) {
    top.key("zone").error(z, quote(cfg.zone) + " is not a zone (1 to 64 letters, digits, '.', '_' or '-')");
    cfg.zone.clear();
  }
}

}  // namespace detail
}  // namespace turnpike::config
