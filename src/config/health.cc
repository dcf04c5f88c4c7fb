// The `health` section of an upstream: passive and active health checks (docs/health-checks.md).
#include "sections.h"

namespace turnpike::config::detail {

namespace {

constexpr Duration kPositive{1};

// A list of HTTP statuses (100..599).
void read_statuses(const Where& w, const YAML::Node& map, const char* key, std::vector<int>& out) {
  const YAML::Node n = map[key];
  if (!n) return;
  const Where kw = w.key(key);
  if (!expect_list(kw, n)) return;
  out.clear();
  for (size_t i = 0; i < n.size(); ++i) {
    if (auto v = read_int(kw.index(i), n[i], 100, 599)) out.push_back(static_cast<int>(*v));
  }
}

void load_passive(const Where& w, const YAML::Node& p, PassiveHealthConfig& c) {
  if (!expect_map(w, p)) return;
  check_keys(w, p, {"enabled", "failures", "statuses", "ejection_time", "max_ejection_time"});
  field(w, p, "enabled", c.enabled);
  field_int(w, p, "failures", c.failures, 1, 1000);
  read_statuses(w, p, "statuses", c.statuses);
  field_duration(w, p, "ejection_time", c.ejection_time, kPositive);
  field_duration(w, p, "max_ejection_time", c.max_ejection_time, kPositive);
  if (c.max_ejection_time < c.ejection_time) {
    w.key("max_ejection_time").error(p["max_ejection_time"] ? p["max_ejection_time"] : p,
                                     "must not be shorter than ejection_time");
  }
}

void load_active(const Where& w, const YAML::Node& a, ActiveHealthConfig& c, const UpstreamConfig& u) {
  if (!expect_map(w, a)) return;
  check_keys(w, a, {"type", "method", "path", "host", "statuses", "body", "port", "interval",
                    "unhealthy_interval", "timeout", "healthy", "unhealthy", "grpc_service"});
  c.type = HealthCheckType::http;
  if (const YAML::Node t = a["type"]) {
    if (auto s = read_string(w.key("type"), t)) {
      if (*s == "http") c.type = HealthCheckType::http;
      else if (*s == "https") c.type = HealthCheckType::https;
      else if (*s == "tcp") c.type = HealthCheckType::tcp;
      else if (*s == "h2") c.type = HealthCheckType::h2;
      else if (*s == "grpc") c.type = HealthCheckType::grpc;
      else w.key("type").error(t, quote(*s) + " is not a check type: use \"http\", \"https\", \"tcp\", \"h2\" or \"grpc\"");
    }
  }
  if (c.type == HealthCheckType::https && !u.tls.enabled) {
    w.key("type").error(a["type"], "\"https\" checks need the upstream's tls settings (tls: {...})");
  }
  if (u.protocol != UpstreamProtocol::http1 &&
      (c.type == HealthCheckType::http || c.type == HealthCheckType::https)) {
    w.key("type").error(a["type"] ? a["type"] : a, "HTTP/2 upstreams support \"h2\", \"grpc\" and \"tcp\" checks");
  }
  // gRPC checks ask grpc.health.v1.Health/Check (a fixed method and path) and judge its answer.
  if (c.type == HealthCheckType::grpc) {
    for (const char* k : {"method", "path", "statuses", "body"}) {
      if (a[k]) w.key(k).error(a[k], "does not apply to \"grpc\" checks (they ask grpc.health.v1.Health/Check)");
    }
  } else if (a["grpc_service"]) {
    w.key("grpc_service").error(a["grpc_service"], "applies to \"grpc\" checks only");
  }
  field(w, a, "grpc_service", c.grpc_service);
  field(w, a, "method", c.method);
  if (!is_token(c.method)) w.key("method").error(a["method"], "must be an HTTP method token");
  field(w, a, "path", c.path);
  if (c.path.empty() || c.path[0] != '/' || c.path.find_first_of(" \r\n") != std::string::npos) {
    w.key("path").error(a["path"], "must start with \"/\" and hold no spaces or line breaks");
  }
  field(w, a, "host", c.host);
  if (c.host.find_first_of(" \r\n") != std::string::npos) w.key("host").error(a["host"], "must hold no spaces or line breaks");
  read_statuses(w, a, "statuses", c.statuses);
  field(w, a, "body", c.body);
  field_int(w, a, "port", c.port, 1, 65535);
  field_duration(w, a, "interval", c.interval, Duration{100});
  c.unhealthy_interval = c.interval;
  field_duration(w, a, "unhealthy_interval", c.unhealthy_interval, Duration{100});
  field_duration(w, a, "timeout", c.timeout, kPositive);
  field_int(w, a, "healthy", c.healthy, 1, 100);
  field_int(w, a, "unhealthy", c.unhealthy, 1, 100);
}

}  // namespace

void load_health(const Where& w, const YAML::Node& h, UpstreamConfig& u) {
  if (!expect_map(w, h)) return;
  UpstreamHealthConfig& c = u.health;
  check_keys(w, h, {"passive", "active", "max_ejected_percent", "slow_start", "initial", "all_down"});
  if (const YAML::Node p = h["passive"]) load_passive(w.key("passive"), p, c.passive);
  if (const YAML::Node a = h["active"]) load_active(w.key("active"), a, c.active, u);
  field_int(w, h, "max_ejected_percent", c.max_ejected_percent, 0, 100);
  field_duration(w, h, "slow_start", c.slow_start, Duration{0});
  if (const YAML::Node n = h["initial"]) {
    if (auto s = read_string(w.key("initial"), n)) {
      if (*s == "healthy") c.start_unhealthy = false;
      else if (*s == "unhealthy") c.start_unhealthy = true;
      else w.key("initial").error(n, quote(*s) + " is not a state: use \"healthy\" or \"unhealthy\"");
    }
    if (c.start_unhealthy && c.active.type == HealthCheckType::none) {
      w.key("initial").error(n, "\"unhealthy\" needs active checks (active: {...}) to bring nodes in");
    }
  }
  if (const YAML::Node n = h["all_down"]) {
    if (auto s = read_string(w.key("all_down"), n)) {
      if (*s == "fail") c.all_down = AllDownPolicy::fail;
      else if (*s == "try") c.all_down = AllDownPolicy::try_all;
      else w.key("all_down").error(n, quote(*s) + " is not a policy: use \"fail\" or \"try\"");
    }
  }
}

}  // namespace turnpike::config::detail
