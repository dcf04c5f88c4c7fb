// The process's one active health checker (checker.h).
#include "turnpike/upstream/checker.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cctype>
#include <optional>
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
  // The connection kept from the last check: HTTPS ones as a transport; cleartext HTTP ones as a
  // bare descriptor outside the reactor (check_kept).
  std::shared_ptr<tls::Transport> conn;
  int kept_fd = -1;
  std::string in;                    // the response buffer, reused
  asio::steady_timer timer;          // the wait between checks (and for a kept check's response)
  asio::io_context& ioc;
  bool stopped = false;

  ~Probe() { close_kept(); }
  void close_kept() {
    if (kept_fd >= 0) ::close(kept_fd);
    kept_fd = -1;
  }
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

bool iequals(std::string_view a, std::string_view lower) {
  return a.size() == lower.size() && std::equal(a.begin(), a.end(), lower.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == y;
         });
}

// The value of the header field `name` (lower-case, colon included) in `head`, leading spaces
// skipped; nullopt when absent. (No copy: this runs for every check.)
std::optional<std::string_view> field_value(std::string_view head, std::string_view name) {
  for (size_t at = head.find("\r\n"); at != std::string_view::npos; at = head.find("\r\n", at + 2)) {
    std::string_view line = head.substr(at + 2);
    line = line.substr(0, line.find("\r\n"));
    if (line.size() < name.size() || !iequals(line.substr(0, name.size()), name)) continue;
    line.remove_prefix(name.size());
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    return line;
  }
  return std::nullopt;
}

// The head's framing: Content-Length (SIZE_MAX when absent, or chunked) and Connection: close.
void read_framing(std::string_view head, size_t& length, bool& close) {
  length = SIZE_MAX;
  close = head.compare(0, 8, "HTTP/1.0") == 0;
  if (auto c = field_value(head, "connection:"); c && c->size() >= 5 && iequals(c->substr(0, 5), "close")) close = true;
  if (field_value(head, "transfer-encoding:")) return;
  const auto v = field_value(head, "content-length:");
  if (!v) return;
  size_t n = 0;
  size_t i = 0;
  while (i < v->size() && (*v)[i] >= '0' && (*v)[i] <= '9' && n < kMaxResponse) n = n * 10 + ((*v)[i++] - '0');
  if (i > 0) length = n;
}

// A check's response as it arrives, and the verdict on it. `in` is the probe's buffer (its
// capacity is kept from check to check).
struct ResponseParser {
  explicit ResponseParser(std::string& buffer) : in(buffer) { in.clear(); }
  std::string& in;
  int status = 0;
  size_t body_at = std::string::npos;  // where the body starts in `in`
  size_t length = SIZE_MAX;            // Content-Length; SIZE_MAX: none (or chunked)
  bool close = true;                   // the node asked to close (or HTTP/1.0)
  bool complete = false;               // the whole response (Content-Length) is in `in`

  // Takes `n` more bytes; true when nothing more is needed to judge (or the cap is reached).
  bool feed(const config::ActiveHealthConfig& a, const char* data, size_t n) {
    in.append(data, n);
    if (body_at == std::string::npos) {
      const size_t end = in.find("\r\n\r\n");
      if (end == std::string::npos) return in.size() >= kMaxResponse;
      body_at = end + 4;
      status = status_of(in);
      read_framing(std::string_view(in).substr(0, end + 2), length, close);
      if (status == 0 || !status_expected(a, status)) return true;
    }
    if (length != SIZE_MAX && in.size() >= body_at + length) {
      complete = true;
      return true;
    }
    if (!a.body.empty() && length == SIZE_MAX && in.find(a.body, body_at) != std::string::npos) return true;
    return in.size() >= kMaxResponse;
  }
  bool keep_alive() const { return complete && !close; }

  // The verdict once reading stopped: true when passed, else false with the reason in `why`.
  // `ec` is the read's error (eof is not one when a response came).
  bool verdict(const config::ActiveHealthConfig& a, bool timed_out, boost::system::error_code ec, std::string& why) const {
    if (status == 0) {
      if (timed_out) why = "timeout";
      else why = std::string(in.empty() ? "no response" : "not an HTTP response") +
                 (ec && ec != asio::error::eof ? ": " + ec.message() : std::string());
      return false;
    }
    if (!status_expected(a, status)) {
      why = "status " + std::to_string(status);
      return false;
    }
    if (!a.body.empty() && in.find(a.body, body_at) == std::string::npos) {
      why = timed_out ? "timeout" : "body does not match";
      return false;
    }
    return true;
  }
};

// Checks are due on 10 ms ticks: the probes due in one tick wake the thread once, together
// (2,000 nodes every second are then 100 wake-ups a second, not 2,000).
constexpr Clock::duration kTick = std::chrono::milliseconds(10);

Clock::time_point on_tick(Clock::time_point t) {
  return Clock::time_point(((t.time_since_epoch() + kTick - Clock::duration(1)) / kTick) * kTick);
}

// How a check on a kept connection ended.
enum class KeptResult : uint8_t {
  passed,
  failed,
  stale,  // the node had closed the connection before this check (not the node's fault): connect again
};

// An HTTP check on the kept cleartext connection `p.kept_fd`, which is outside the reactor: the
// request is sent, and the response read on the following 10 ms ticks with a plain recv, so a
// check costs a send and a recv (no readiness wake-up of its own, no deadline timer): at 2,000
// checks a second the thread wakes on the ticks only.
asio::awaitable<KeptResult> check_kept(Probe& p, const config::ActiveHealthConfig& a, std::string& why) {
  const int fd = p.kept_fd;
  const ssize_t sent = ::send(fd, p.request.data(), p.request.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent != static_cast<ssize_t>(p.request.size())) {
    p.close_kept();
    if (sent <= 0) co_return KeptResult::stale;  // (a request this small fits an empty send buffer)
    why = "send: short write";
    co_return KeptResult::failed;
  }
  const Clock::time_point deadline = Clock::now() + a.timeout;
  ResponseParser r(p.in);
  boost::system::error_code ec;
  bool done = false;
  bool timed_out = false;
  while (!done) {
    p.timer.expires_at(on_tick(Clock::now() + Clock::duration(1)));
    co_await p.timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (p.stopped) co_return KeptResult::failed;
    for (;;) {  // what arrived since the send
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        done = r.feed(a, buf, static_cast<size_t>(n));
        if (done) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0 && errno == EINTR) continue;
      ec = n == 0 ? boost::system::error_code(asio::error::eof)
                  : boost::system::error_code(errno, boost::system::system_category());
      done = true;
      break;
    }
    if (!done && Clock::now() >= deadline) {
      timed_out = true;
      done = true;
    }
  }
  const bool keep = r.keep_alive() && !timed_out;
  if (!keep) p.close_kept();
  if (r.in.empty() && ec) co_return KeptResult::stale;  // closed (or reset) before any byte
  co_return r.verdict(a, timed_out, ec, why) ? KeptResult::passed : KeptResult::failed;
}

// One check on a new connection (or HTTPS on the kept one), through the reactor: true when it
// passed, else false with the reason in `why`. A cleartext HTTP connection the node lets live is
// then kept outside the reactor for check_kept; an HTTPS one as it is. A kept HTTPS connection
// the node closed meanwhile is replaced once, without counting as a failure.
asio::awaitable<bool> check_connected(Probe& p, const HealthChecker::Spec& spec, std::string& why, bool fresh) {
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
  bool keep = false;
  ResponseParser r(p.in);
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
    for (;;) {
      char buf[4096];
      size_t n = io->read_some(buf, sizeof buf, ec);
      if (ec == asio::error::would_block) {
        ec = co_await io->wait_readable();
        if (ec || *timed_out) break;
        continue;
      }
      if (n > 0 && r.feed(a, buf, n)) break;
      if (ec) break;
    }
    keep = r.keep_alive() && !*timed_out;
    if (r.in.empty() && reused && !*timed_out) stale = true;
    ok = r.verdict(a, *timed_out, ec, why);
  } while (false);
  deadline.cancel();
  if (keep && a.type == config::HealthCheckType::http) {
    boost::system::error_code ignored;
    p.kept_fd = io->socket().release(ignored);  // leaves the reactor: check_kept reads it on ticks
  } else if (keep) {
    p.conn = std::move(io);
  } else {
    io->close();
  }
  if (stale) {
    const bool again = co_await check_connected(p, spec, why, true);
    co_return again;
  }
  co_return ok;
}

// One check of `p`'s node: true when it passed, else false with the reason in `why`. HTTP(S)
// checks keep their connection for the next check when the node allows (one connect per node,
// not per check: a loopback connect and close cost the checker more than the request).
asio::awaitable<bool> check_once(Probe& p, const HealthChecker::Spec& spec, std::string& why) {
  if (p.kept_fd >= 0) {
    const KeptResult k = co_await check_kept(p, spec.health->active, why);
    if (k != KeptResult::stale) co_return k == KeptResult::passed;
  }
  const bool ok = co_await check_connected(p, spec, why, false);
  co_return ok;
}

asio::awaitable<void> run_probe(std::shared_ptr<Probe> p, Clock::duration first_wait) {
  Clock::time_point due = Clock::now() + first_wait;
  while (!p->stopped) {
    p->timer.expires_at(on_tick(std::max(due, Clock::now())));
    co_await p->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (p->stopped) break;
    const Clock::time_point started = Clock::now();
    std::shared_ptr<const HealthChecker::Spec> spec = p->spec;
    std::string why;
    const bool passed = co_await check_once(*p, *spec, why);
    if (p->stopped) break;
    health_registry().record_check(*p->node, *spec->health, passed, why);
    const auto& a = spec->health->active;
    // The interval runs from the check's start: a check's own time (a tick for a kept
    // connection) does not drift the schedule.
    due = started + (p->node->usable(health_now_ms()) ? a.interval : a.unhealthy_interval);
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
      const uint16_t port = a.port != 0 ? a.port : up->nodes[i].endpoint.port();
      const tcp::endpoint endpoint(up->nodes[i].endpoint.address(), port);
      if (p->spec && (p->endpoint != endpoint || p->spec->health->active.type != a.type)) {
        p->close_kept();  // checked elsewhere or otherwise now: the next check connects anew
        p->conn.reset();
      }
      p->spec = spec;
      p->host = up->config->nodes[i].host;
      p->endpoint = endpoint;
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
