// The process's one active health checker (checker.h).
#include "turnpike/upstream/checker.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <random>

#include "turnpike/common/coarse_clock.h"
#include "turnpike/tls/transport.h"

namespace turnpike::upstream {

namespace {

constexpr size_t kMaxResponse = 64 * 1024;  // a check reads at most this much of a response

// "HTTP/1.1 200 ..." → 200; 0 when the line is not a status line.
int status_of(std::string_view head) {
  if (head.size() < 12 || head.substr(0, 7) != "HTTP/1.") return 0;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (head[i] < '0' || head[i] > '9') return 0;
    status = status * 10 + (head[i] - '0');
  }
  return status;
}

bool status_expected(const config::ActiveHealthConfig& a, int status) {
  if (a.statuses.empty()) return status >= 200 && status < 400;
  return std::find(a.statuses.begin(), a.statuses.end(), status) != a.statuses.end();
}

}  // namespace

// What the probes of one upstream share: its settings and the request they send.
struct HealthChecker::Spec {
  std::shared_ptr<const void> config;          // keeps `health` (and `up->config`) alive
  std::shared_ptr<const ResolvedUpstream> up;  // its TLS context
  const config::UpstreamHealthConfig* health = nullptr;
  std::string name;
};

// One node's probe.
struct HealthChecker::Probe {
  Probe(asio::io_context& ioc, std::shared_ptr<NodeHealth> n) : node(std::move(n)), timer(ioc), ioc(ioc) {}
  std::shared_ptr<NodeHealth> node;
  std::shared_ptr<const Spec> spec;  // replaced by a reload; read once per check
  tcp::endpoint endpoint;
  std::string host;                  // the node's configured host (Host header, TLS name)
  std::string request;               // HTTP checks: the request's bytes
  asio::steady_timer timer;          // the wait between checks
  asio::io_context& ioc;
  bool stopped = false;
};

namespace {

using Probe = HealthChecker::Probe;

// The request an HTTP check sends.
std::string build_request(const config::ActiveHealthConfig& a, const std::string& host, uint16_t port) {
  std::string r;
  r.reserve(128);
  r.append(a.method).append(" ").append(a.path).append(" HTTP/1.1\r\nHost: ");
  if (!a.host.empty()) r.append(a.host);
  else r.append(host).append(":").append(std::to_string(port));
  r.append("\r\nUser-Agent: turnpike-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n");
  return r;
}

// One check of `p`'s node: true when it passed, else false with the reason in `why`.
asio::awaitable<bool> check_once(Probe& p, const HealthChecker::Spec& spec, std::string& why) {
  const config::ActiveHealthConfig& a = spec.health->active;
  // The transport is shared with the deadline's handler, which closes it when the check is late.
  auto io = std::make_shared<tls::Transport>(tcp::socket(p.ioc));
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer deadline(p.ioc);
  deadline.expires_after(a.timeout);
  deadline.async_wait([io, timed_out](boost::system::error_code ec) {
    if (ec) return;
    *timed_out = true;
    io->close();
  });
  auto fail = [&](std::string_view what, boost::system::error_code ec) {
    why = *timed_out ? std::string("timeout") : std::string(what) + (ec ? ": " + ec.message() : std::string());
    return false;
  };
  bool ok = false;
  do {
    auto [ec] = co_await io->socket().async_connect(p.endpoint, asio::as_tuple(asio::use_awaitable));
    if (ec || *timed_out) {
      ok = fail("connect", ec);
      break;
    }
    if (a.type == config::HealthCheckType::tcp) {
      ok = true;
      break;
    }
    boost::system::error_code ignored;
    io->socket().non_blocking(true, ignored);
    if (a.type == config::HealthCheckType::https) {
      SSL* ssl = spec.up->tls ? spec.up->tls->new_session(spec.up->tls->config().sni.empty() ? p.host
                                                                                              : spec.up->tls->config().sni,
                                                          {}, nullptr)
                              : nullptr;
      if (!ssl) {
        ok = fail("tls", {});
        break;
      }
      io->start_tls(ssl);
      ec = co_await io->handshake();
      if (ec || *timed_out) {
        ok = fail("tls handshake", ec);
        break;
      }
    }
    ec = co_await io->write_all(p.request);
    if (ec || *timed_out) {
      ok = fail("send", ec);
      break;
    }
    // Read the status line, and with a body to match, up to the match (or the end, or 64 KiB).
    std::string in;
    char buf[4096];
    int status = 0;
    size_t body_at = std::string::npos;
    for (;;) {
      size_t n = io->read_some(buf, sizeof buf, ec);
      if (ec == asio::error::would_block) {
        ec = co_await io->wait_readable();
        if (ec || *timed_out) break;
        continue;
      }
      if (n > 0) in.append(buf, n);
      if (status == 0 && in.find("\r\n") != std::string::npos) {
        status = status_of(in);
        if (status == 0 || !status_expected(a, status)) break;
        if (a.body.empty()) break;
      }
      if (status != 0 && body_at == std::string::npos) {
        body_at = in.find("\r\n\r\n");
        if (body_at != std::string::npos) body_at += 4;
      }
      if (body_at != std::string::npos && in.find(a.body, body_at) != std::string::npos) break;
      if (ec || in.size() >= kMaxResponse) break;
    }
    if (status == 0) {
      ok = fail(in.empty() ? "no response" : "not an HTTP response", ec == asio::error::eof ? boost::system::error_code{} : ec);
    } else if (!status_expected(a, status)) {
      why = "status " + std::to_string(status);
    } else if (!a.body.empty() && (body_at == std::string::npos || in.find(a.body, body_at) == std::string::npos)) {
      why = *timed_out ? "timeout" : "body does not match";
    } else {
      ok = true;
    }
  } while (false);
  deadline.cancel();
  io->close();
  co_return ok;
}

asio::awaitable<void> run_probe(std::shared_ptr<Probe> p, Clock::duration first_wait) {
  Clock::duration wait = first_wait;
  while (!p->stopped) {
    p->timer.expires_after(wait);
    co_await p->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (p->stopped) break;
    std::shared_ptr<const HealthChecker::Spec> spec = p->spec;
    std::string why;
    const bool passed = co_await check_once(*p, *spec, why);
    if (p->stopped) break;
    health_registry().record_check(*p->node, *spec->health, passed, why);
    const auto& a = spec->health->active;
    wait = p->node->usable(health_now_ms()) ? a.interval : a.unhealthy_interval;
  }
}

}  // namespace

HealthChecker::HealthChecker() : tick_timer_(ioc_) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start() {
  if (thread_.joinable()) return;
  schedule_tick();
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "tp-health");  // (bench/health.sh reads its CPU by name)
    auto guard = asio::make_work_guard(ioc_);
    ioc_.run();
  });
}

void HealthChecker::stop() {
  if (!thread_.joinable()) return;
  ioc_.stop();
  thread_.join();
  probes_.clear();
}

void HealthChecker::schedule_tick() {
  tick_timer_.expires_after(std::chrono::seconds(1));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    health_registry().tick();
    schedule_tick();
  });
}

void HealthChecker::update(std::shared_ptr<const void> config,
                           std::vector<std::shared_ptr<const ResolvedUpstream>> upstreams) {
  asio::post(ioc_, [this, config = std::move(config), ups = std::move(upstreams)]() mutable {
    apply(std::move(config), std::move(ups));
  });
}

void HealthChecker::apply(std::shared_ptr<const void> config,
                          std::vector<std::shared_ptr<const ResolvedUpstream>> upstreams) {
  static thread_local std::minstd_rand rng{std::random_device{}()};
  config_ = config;
  std::unordered_map<const NodeHealth*, std::shared_ptr<Probe>> next;
  size_t started = 0;
  for (const auto& up : upstreams) {
    if (!up->health || up->config->health.active.type == config::HealthCheckType::none) continue;
    auto spec = std::make_shared<Spec>();
    spec->config = config;
    spec->up = up;
    spec->health = &up->config->health;
    spec->name = up->config->name;
    const auto& a = spec->health->active;
    for (size_t i = 0; i < up->nodes.size(); ++i) {
      const std::shared_ptr<NodeHealth>& node = up->health->nodes[i];
      if (next.count(node.get())) continue;  // listed twice
      std::shared_ptr<Probe> p;
      if (auto it = probes_.find(node.get()); it != probes_.end()) {
        p = std::move(it->second);  // keeps its schedule and its counts
        probes_.erase(it);
      } else {
        p = std::make_shared<Probe>(ioc_, node);
        const auto interval = std::chrono::duration_cast<Clock::duration>(a.interval);
        const auto first = Clock::duration(std::uniform_int_distribution<int64_t>(0, interval.count())(rng));
        asio::co_spawn(ioc_, run_probe(p, first), asio::detached);
        ++started;
      }
      p->spec = spec;
      p->host = up->config->nodes[i].host;
      const uint16_t port = a.port != 0 ? a.port : up->nodes[i].endpoint.port();
      p->endpoint = tcp::endpoint(up->nodes[i].endpoint.address(), port);
      if (a.type != config::HealthCheckType::tcp) p->request = build_request(a, p->host, port);
      next.emplace(node.get(), std::move(p));
    }
  }
  // Nodes gone (or no longer checked): their probes stop at their next wake.
  for (auto& [node, p] : probes_) {
    p->stopped = true;
    p->timer.cancel();
  }
  const size_t stopped = probes_.size();
  probes_ = std::move(next);
  if (started != 0 || stopped != 0) {
    spdlog::info("health checks: {} node(s) checked ({} new, {} no longer)", probes_.size(), started, stopped);
  }
}

}  // namespace turnpike::upstream
