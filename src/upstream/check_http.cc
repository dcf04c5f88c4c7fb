// HTTP/1.x, HTTPS and TCP checks (probe.h): the kept-connection fast path and the reactor path.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <optional>
#include <tuple>

#include "probe.h"
#include "turnpike/tls/transport.h"

namespace turnpike::upstream {

namespace {

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

// ASCII case-insensitive equality with a lower-case `lower` (no locale: this runs for every check).
bool iequals(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const char c = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + ('a' - 'A')) : a[i];
    if (c != lower[i]) return false;
  }
  return true;
}

// The head's framing, in one pass over its field lines (the first of each name counts):
// Content-Length (SIZE_MAX when absent, or with Transfer-Encoding) and Connection: close.
void read_framing(std::string_view head, size_t& length, bool& close) {
  length = SIZE_MAX;
  close = head.starts_with("HTTP/1.0");
  bool have_length = false, have_connection = false, chunked = false;
  size_t at = head.find('\n');  // (past the status line)
  while (at != std::string_view::npos) {
    const size_t from = at + 1;
    at = head.find('\n', from);
    std::string_view line = head.substr(from, (at == std::string_view::npos ? head.size() : at) - from);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (!have_length && iequals(name, "content-length")) {
      have_length = true;
      size_t n = 0;
      size_t i = 0;
      while (i < value.size() && value[i] >= '0' && value[i] <= '9' && n < ResponseParser::kMaxResponse) {
        n = n * 10 + static_cast<size_t>(value[i++] - '0');
      }
      if (i > 0) length = n;
    } else if (!have_connection && iequals(name, "connection")) {
      have_connection = true;
      if (value.size() >= 5 && iequals(value.substr(0, 5), "close")) close = true;
    } else if (iequals(name, "transfer-encoding")) {
      chunked = true;
    }
  }
  if (chunked) length = SIZE_MAX;
}

}  // namespace

std::string_view to_string(KeptResult r) noexcept {
  switch (r) {
    case KeptResult::pending: return "pending";
    case KeptResult::passed: return "passed";
    case KeptResult::failed: return "failed";
    case KeptResult::stale: return "stale";
  }
  return "unknown";
}

// ---- the response ----

bool status_expected(const config::ActiveHealthConfig& a, int status) {
  if (a.statuses.empty()) return status >= 200 && status < 400;
  return std::find(a.statuses.begin(), a.statuses.end(), status) != a.statuses.end();
}

bool ResponseParser::feed(const config::ActiveHealthConfig& a, const char* data, size_t n) {
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

bool ResponseParser::verdict(const config::ActiveHealthConfig& a, bool timed_out, boost::system::error_code ec,
                             std::string& why) const {
  if (status == 0) {
    if (timed_out) {
      why = "timeout";
    } else {
      why = in.empty() ? "no response" : "not an HTTP response";
      if (ec && ec != asio::error::eof) why += ": " + ec.message();
    }
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

std::string build_http_request(const config::ActiveHealthConfig& a, const std::string& host, uint16_t port) {
  std::string r;
  r.reserve(128);
  r.append(a.method).append(" ").append(a.path).append(" HTTP/1.1\r\nHost: ");
  if (!a.host.empty()) r.append(a.host);
  else r.append(host).append(":").append(std::to_string(port));
  r.append("\r\nUser-Agent: turnpike-health-check\r\nAccept: */*\r\n\r\n");
  return r;
}

// ---- the probe ----

HealthChecker::Probe::Probe(asio::io_context& c, std::shared_ptr<NodeHealth> n) : node(std::move(n)), ioc(c) {}

HealthChecker::Probe::~Probe() { close_kept(); }

// ---- kept cleartext connections (no reactor) ----

namespace {

std::string errno_text(int e) { return boost::system::error_code(e, boost::system::system_category()).message(); }

// A connection made for this check: the request goes once the handshake is done (a send on a
// connecting socket fails with EAGAIN; on a refused one, with the connect's error).
KeptResult send_on_connect(HealthChecker::Probe& p, Clock::time_point now, std::string& why) {
  const ssize_t sent = ::send(p.kept_fd, p.request.data(), p.request.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent == static_cast<ssize_t>(p.request.size())) {
    p.connecting = false;
    return KeptResult::pending;
  }
  if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    if (now < p.deadline) return KeptResult::pending;
    why = "timeout";
  } else if (sent < 0) {
    // (Reset or closed once connected: the send's failure; anything else: the connect's.)
    const int e = errno;
    why = (e == EPIPE || e == ECONNRESET ? "send: " : "connect: ") + errno_text(e);
  } else {
    why = "send: short write";
  }
  p.close_kept();
  return KeptResult::failed;
}

}  // namespace

void HealthChecker::Probe::close_kept() {
  if (kept_fd >= 0) {
    // Closed with a reset, as HAProxy closes its checks: nothing of a check is left to deliver,
    // and a normal close would leave this side in TIME_WAIT for a minute per connection (a
    // rolling update closes the connections of every node it removes).
    const linger abort{1, 0};
    ::setsockopt(kept_fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    ::close(kept_fd);
  }
  kept_fd = -1;
  connecting = false;
  if (conn) conn->close();
  conn.reset();
  close_h2(*this);
}

KeptResult sent_kept(HealthChecker::Probe& p, ssize_t sent, std::string& why) {
  if (sent == static_cast<ssize_t>(p.request.size())) {
    p.response.reset();
    p.fresh = false;
    return KeptResult::pending;
  }
  p.close_kept();
  if (sent <= 0) return KeptResult::stale;  // reset or closed by the node (a request this small fits an empty buffer)
  why = "send: short write";
  return KeptResult::failed;
}

KeptResult connect_kept(HealthChecker::Probe& p, Clock::time_point now, std::string& why) {
  p.close_kept();
  p.response.reset();
  const int fd = ::socket(p.endpoint.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    why = "connect: " + errno_text(errno);
    return KeptResult::failed;
  }
  if (::connect(fd, p.endpoint.data(), static_cast<socklen_t>(p.endpoint.size())) != 0 && errno != EINPROGRESS) {
    why = "connect: " + errno_text(errno);
    ::close(fd);
    return KeptResult::failed;
  }
  p.kept_fd = fd;
  p.connecting = true;
  p.fresh = true;
  return send_on_connect(p, now, why);
}

KeptResult read_kept(HealthChecker::Probe& p, Clock::time_point now, std::string& why, const Received* first) {
  if (p.connecting) {
    const KeptResult sent = send_on_connect(p, now, why);
    if (sent != KeptResult::pending || p.connecting) return sent;
    first = nullptr;  // (nothing was received before the request went)
  }
  const config::ActiveHealthConfig& a = p.checking->health->active;
  ResponseParser& r = p.response;
  boost::system::error_code ec;
  bool done = false;
  // One receive's result: false when there is nothing more to read for now.
  auto take = [&](ssize_t n, const char* data, size_t capacity) {
    if (n > 0) {
      done = r.feed(a, data, static_cast<size_t>(n));
      return !done && static_cast<size_t>(n) == capacity;  // (a short read emptied the socket)
    }
    if (n == -EINTR) return true;
    if (n == -EAGAIN || n == -EWOULDBLOCK) return false;
    ec = n == 0 ? boost::system::error_code(asio::error::eof)
                : boost::system::error_code(static_cast<int>(-n), boost::system::system_category());
    done = true;
    return false;
  };
  bool more = first == nullptr || take(first->n, first->data, first->capacity);
  while (more) {
    char buf[4096];
    const ssize_t n = ::recv(p.kept_fd, buf, sizeof buf, MSG_DONTWAIT);
    more = take(n < 0 ? -errno : n, buf, sizeof buf);
  }
  const bool timed_out = !done && now >= p.deadline;
  if (!done && !timed_out) return KeptResult::pending;
  if (timed_out || !r.keep_alive()) p.close_kept();
  if (r.in.empty() && ec && !p.fresh) return KeptResult::stale;  // closed (or reset) before any byte
  return r.verdict(a, timed_out, ec, why) ? KeptResult::passed : KeptResult::failed;
}

// ---- through the reactor ----

namespace {

asio::awaitable<bool> check_through_reactor(HealthChecker::Probe& p, const HealthChecker::Spec& spec,
                                            std::string& why, bool fresh) {
  const config::ActiveHealthConfig& a = spec.health->active;
  const bool http = a.type != config::HealthCheckType::tcp;
  const bool reused = http && p.conn && !fresh;
  // The transport is shared with the deadline's handler, which closes it when the check is late.
  std::shared_ptr<tls::Transport> io = reused ? std::move(p.conn) : std::make_shared<tls::Transport>(tcp::socket(p.ioc));
  p.conn.reset();
  asio::steady_timer deadline(p.ioc);
  const std::shared_ptr<bool> timed_out = arm_check_deadline(deadline, io, a.timeout);
  auto fail = [&](std::string_view what, boost::system::error_code ec) {
    why = *timed_out ? std::string("timeout") : std::string(what) + (ec ? ": " + ec.message() : std::string());
    return false;
  };
  bool ok = false;
  bool stale = false;  // a reused connection failed before any response byte
  bool keep = false;
  ResponseParser& r = p.response;
  r.reset();
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
  if (keep) {
    p.conn = std::move(io);
  } else {
    io->close();
  }
  if (stale) {
    const bool again = co_await check_through_reactor(p, spec, why, true);
    co_return again;
  }
  co_return ok;
}

}  // namespace

asio::awaitable<bool> check_connected(HealthChecker::Probe& p, const HealthChecker::Spec& spec, std::string& why) {
  const config::HealthCheckType type = spec.health->active.type;
  if (type == config::HealthCheckType::h2 || type == config::HealthCheckType::grpc) {
    const bool ok = co_await check_h2(p, spec, why);
    co_return ok;
  }
  const bool ok = co_await check_through_reactor(p, spec, why, false);
  co_return ok;
}

}  // namespace turnpike::upstream
