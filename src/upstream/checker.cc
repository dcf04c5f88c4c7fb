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
#include <cctype>
#include <random>
#include <tuple>

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
  std::shared_ptr<tls::Transport> conn;  // HTTP checks: the connection kept from the last check
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
  r.append("\r\nUser-Agent: turnpike-health-check\r\nAccept: */*\r\n\r\n");
  return r;
}

// What a check read of a response.
struct ReadResponse {
  int status = 0;
  size_t body_at = std::string::npos;  // where the body starts in `in`
  bool complete = false;               // the whole response (Content-Length) is in `in`
  bool keep_alive = false;             // complete, and the node did not ask to close
};

// The head's framing: Content-Length (SIZE_MAX when absent, or chunked) and Connection: close.
void read_framing(std::string_view head, size_t& length, bool& close) {
  std::string lower(head);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  length = SIZE_MAX;
  close = lower.find("\r\nconnection: close") != std::string::npos || lower.compare(0, 8, "http/1.0") == 0;
  if (lower.find("\r\ntransfer-encoding:") != std::string::npos) return;
  const size_t at = lower.find("\r\ncontent-length:");
  if (at == std::string::npos) return;
  size_t v = 0;
  size_t i = at + 17;
  while (i < lower.size() && lower[i] == ' ') ++i;
  const size_t digits = i;
  while (i < lower.size() && lower[i] >= '0' && lower[i] <= '9' && v < kMaxResponse) v = v * 10 + (lower[i++] - '0');
  if (i > digits) length = v;
}

// One check of `p`'s node: true when it passed, else false with the reason in `why`. HTTP(S)
// checks keep their connection for the next check when the node allows (one connect per node,
// not per check: a loopback connect and close cost the checker more than the request); a kept
// connection the node closed meanwhile is replaced once, without counting as a failure.
asio::awaitable<bool> check_once(Probe& p, const HealthChecker::Spec& spec, std::string& why, bool fresh = false) {
  const config::ActiveHealthConfig& a = spec.health->active;
  const bool http = a.type != config::HealthCheckType::tcp;
  const bool reused = http && p.conn && !fresh;
  // The transport is shared with the deadline's handler, which closes it when the check is late.
  std::shared_ptr<tls::Transport> io = reused ? std::move(p.conn) : std::make_shared<tls::Transport>(tcp::socket(p.ioc));
  p.conn.reset();
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
  bool stale = false;  // a reused connection failed before any response byte
  ReadResponse r;
  std::string in;
  do {
    boost::system::error_code ec;
    if (!reused) {
      std::tie(ec) = co_await io->socket().async_connect(p.endpoint, asio::as_tuple(asio::use_awaitable));
      if (ec || *timed_out) {
        ok = fail("connect", ec);
        break;
      }
      if (!http) {
        ok = true;
        break;
      }
      boost::system::error_code ignored;
      io->socket().non_blocking(true, ignored);
      if (a.type == config::HealthCheckType::https) {
        const tls::ClientContext* ctx = spec.up->tls.get();
        SSL* ssl = ctx ? ctx->new_session(ctx->config().sni.empty() ? p.host : ctx->config().sni, {}, nullptr) : nullptr;
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
    }
    ec = co_await io->write_all(p.request);
    if (ec || *timed_out) {
      stale = reused && !*timed_out;
      ok = fail("send", ec);
      break;
    }
    // Read the head, then the body as far as the match (or the reuse) needs it, at most 64 KiB.
    char buf[4096];
    size_t length = SIZE_MAX;
    bool close = true;
    for (;;) {
      size_t n = io->read_some(buf, sizeof buf, ec);
      if (ec == asio::error::would_block) {
        ec = co_await io->wait_readable();
        if (ec || *timed_out) break;
        continue;
      }
      if (n > 0) in.append(buf, n);
      if (r.body_at == std::string::npos) {
        const size_t end = in.find("\r\n\r\n");
        if (end != std::string::npos) {
          r.body_at = end + 4;
          r.status = status_of(in);
          read_framing(std::string_view(in).substr(0, end + 2), length, close);
          if (r.status == 0 || !status_expected(a, r.status)) break;
        }
      }
      if (r.body_at != std::string::npos) {
        if (length != SIZE_MAX && in.size() >= r.body_at + length) {
          r.complete = true;
          break;
        }
        if (!a.body.empty() && in.find(a.body, r.body_at) != std::string::npos && length == SIZE_MAX) break;
      }
      if (ec || in.size() >= kMaxResponse) break;
    }
    r.keep_alive = r.complete && !close;
    if (in.empty() && reused && !*timed_out) stale = true;
    if (r.status == 0) {
      ok = fail(in.empty() ? "no response" : "not an HTTP response", ec == asio::error::eof ? boost::system::error_code{} : ec);
    } else if (!status_expected(a, r.status)) {
      why = "status " + std::to_string(r.status);
    } else if (!a.body.empty() && in.find(a.body, r.body_at) == std::string::npos) {
      why = *timed_out ? "timeout" : "body does not match";
    } else {
      ok = true;
    }
  } while (false);
  deadline.cancel();
  if (r.keep_alive && !*timed_out) {
    p.conn = std::move(io);
  } else {
    io->close();
  }
  if (stale) {
    const bool again = co_await check_once(p, spec, why, true);
    co_return again;
  }
  co_return ok;
}

// Checks are due on 10 ms ticks: the probes due in one tick wake the thread once, together
// (2,000 nodes every second are then 100 wake-ups a second, not 2,000).
constexpr Clock::duration kTick = std::chrono::milliseconds(10);

Clock::time_point on_tick(Clock::time_point t) {
  return Clock::time_point(((t.time_since_epoch() + kTick - Clock::duration(1)) / kTick) * kTick);
}

asio::awaitable<void> run_probe(std::shared_ptr<Probe> p, Clock::duration first_wait) {
  Clock::duration wait = first_wait;
  while (!p->stopped) {
    p->timer.expires_at(on_tick(Clock::now() + wait));
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
      p->host = up->nodes[i].host;  // nodes expand from names: index the resolved ones
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
