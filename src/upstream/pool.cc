// Per-worker keepalive pool for one upstream: node selection, connect, park, reuse, timeouts.
//
// Hot path (acquire/release of a parked connection): list splices. A connection still parked at
// the next 100 ms sweep is looked at and then watched, so an upstream close is noticed while it
// sits idle; a request that cannot be retried elsewhere looks before using it. No lock; the only
// allocations are for new connections.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/post.hpp>
#include <openssl/ssl.h>

#include <unordered_map>

#include <spdlog/spdlog.h>

#include "turnpike/common/coarse_clock.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

std::string_view to_string(ConnState s) noexcept {
  switch (s) {
    case ConnState::connecting: return "connecting";
    case ConnState::idle: return "idle";
    case ConnState::sending: return "sending";
    case ConnState::receiving: return "receiving";
    case ConnState::tunnel: return "tunnel";
    case ConnState::closed: return "closed";
  }
  return "unknown";
}

std::string_view to_string(NodeFailure f) noexcept {
  switch (f) {
    case NodeFailure::connect_failed: return "connect_failed";
    case NodeFailure::connect_timeout: return "connect_timeout";
    case NodeFailure::tls_failed: return "tls_failed";
    case NodeFailure::timeout: return "timeout";
    case NodeFailure::closed: return "closed";
    case NodeFailure::reset: return "reset";
    case NodeFailure::bad_response: return "bad_response";
  }
  return "unknown";
}

// ---- FailureLogLimit ----

bool FailureLogLimit::admit(Clock::time_point now, Clock::duration interval, uint32_t& held_back,
                            Clock::duration& since) {
  if (logged_ && now - last_line_ < interval) {
    ++held_back_;
    return false;
  }
  held_back = held_back_;
  since = logged_ ? now - last_line_ : Clock::duration::zero();
  held_back_ = 0;
  last_line_ = now;
  logged_ = true;
  return true;
}

bool FailureLogLimit::flush_due(Clock::time_point now, Clock::duration interval, uint32_t& held_back,
                                Clock::duration& since) {
  if (held_back_ == 0 || now - last_line_ < interval) return false;
  held_back = held_back_;
  since = now - last_line_;
  held_back_ = 0;
  logged_ = false;  // the summary closed the interval: the next failure is news again
  return true;
}

// ---- UpstreamConnection ----

void UpstreamConnection::arm(ConnState s, Clock::time_point now) {
  state = s;
  const auto& cfg = pool->config();
  switch (s) {
    case ConnState::connecting: deadline = now + cfg.connect_timeout; break;
    case ConnState::idle: deadline = now + cfg.keepalive_idle_timeout; break;
    case ConnState::sending: deadline = now + cfg.send_timeout; break;
    case ConnState::receiving: deadline = now + cfg.read_timeout; break;
    case ConnState::tunnel:
    case ConnState::closed: deadline = Clock::time_point::max(); break;
  }
}

UpstreamPool::UpstreamPool(asio::io_context& ioc, BufferPool& buffers,
                           std::shared_ptr<const ResolvedUpstream> upstream, const H2UpstreamCounters& h2_counters)
    : ioc_(ioc), buffers_(buffers), upstream_(std::move(upstream)), nodes_(upstream_->nodes.size()),
      balancer_(upstream_->nodes.size()) {
  if (config().protocol != config::UpstreamProtocol::http1) h2_ = std::make_unique<H2UpstreamPool>(ioc_, *this, h2_counters);
}

UpstreamPool::~UpstreamPool() {
  while (!all_.empty()) destroy(&all_.front());
}

size_t UpstreamPool::idle() const {
  size_t n = 0;
  for (const auto& node : nodes_) n += node.idle_count;
  return n;
}

size_t UpstreamPool::pick(const PickRequest& r, Clock::time_point now) { return balancer_.pick(*upstream_, r, now); }

size_t UpstreamPool::pick_any(const PickRequest& r, Clock::time_point now) {
  return balancer_.pick_any(*upstream_, r, now);
}

UpstreamPool::Acquired UpstreamPool::take_idle(size_t node, bool verify) {
  Node& n = nodes_[node];
  UpstreamConnection* conn = nullptr;
  for (;;) {
    if (n.idle.empty()) return {};
    conn = &n.idle.front();
    n.idle.pop_front();
    --n.idle_count;
    // A request that must not be retried elsewhere (not idempotent) looks first: readable here
    // means the upstream closed the connection (or sent bytes nobody asked for) since it was
    // parked, which the watch may not have reported yet (see sweep).
    if (!verify || !conn->io.has_input()) break;
    destroy(conn);
  }
  conn->reused = true;
  conn->state = ConnState::sending;
  ++active_;
  return Acquired{{}, false, conn};
}

asio::awaitable<UpstreamPool::Acquired> UpstreamPool::acquire(size_t node, bool verify) {
  Acquired parked = take_idle(node, verify);
  if (parked.conn) co_return parked;
  co_return co_await connect(node);
}

asio::awaitable<UpstreamPool::Acquired> UpstreamPool::connect(size_t node) {
  auto* conn = new UpstreamConnection(ioc_, *this, node);
  all_.push_back(*conn);
  ++active_;
  conn->arm(ConnState::connecting, Clock::now());
  auto [ec] = co_await conn->io.socket().async_connect(upstream_->nodes[node].endpoint,
                                                       asio::as_tuple(asio::use_awaitable));
  bool tls_failed = false;
  if (!ec && upstream_->tls) {
    boost::system::error_code ignored;
    conn->io.socket().non_blocking(true, ignored);
    ec = co_await start_tls(conn);
    tls_failed = ec && !conn->timed_out;
  }
  if (ec) {
    bool timed_out = conn->timed_out;
    --active_;
    destroy(conn);
    report_failure(node, timed_out ? NodeFailure::connect_timeout
                                   : (tls_failed ? NodeFailure::tls_failed : NodeFailure::connect_failed),
                   timed_out ? boost::system::error_code{} : ec);
    co_return Acquired{ec, timed_out, nullptr, tls_failed};
  }
  boost::system::error_code ignored;
  conn->io.socket().set_option(tcp::no_delay(true), ignored);
  conn->io.socket().non_blocking(true, ignored);  // reads and writes are tried directly first
  conn->reused = false;
  conn->state = ConnState::sending;
  co_return Acquired{{}, false, conn};
}

asio::awaitable<boost::system::error_code> UpstreamPool::start_tls(UpstreamConnection* conn) {
  Node& n = nodes_[conn->node];
  SSL* ssl = upstream_->tls->new_session(upstream_->nodes[conn->node].host, {}, n.tls_session);
  if (!ssl) co_return boost::asio::error::no_memory;
  conn->io.start_tls(ssl);
  auto ec = co_await conn->io.handshake();
  if (ec) {
    spdlog::debug("upstream {} {}: TLS handshake failed: {}", config().name, upstream_->nodes[conn->node].address,
                  ec.message());
  }
  co_return ec;
}

UpstreamPool::Node::~Node() {
  if (tls_session) SSL_SESSION_free(tls_session);
}

void UpstreamPool::report_status(size_t node, int status) {
  if (upstream_->health) health_registry().record_status(*upstream_->health, node, status);
}

void UpstreamPool::report_failure(size_t node, NodeFailure what, boost::system::error_code ec) {
  if (upstream_->health) health_registry().record_failure(*upstream_->health, node, to_string(what));
  Node& n = nodes_[node];
  uint32_t held_back = 0;
  Clock::duration since{};
  if (!n.failure_log.admit(coarse_now(), kFailureLogInterval, held_back, since)) {
    n.last_failure = what;
    n.last_failure_ec = ec;
    return;
  }
  const auto& name = config().name;
  const auto& addr = upstream_->nodes[node].address;
  const std::string reason = ec ? ec.message() : std::string();
  const char* sep = ec ? ": " : "";
  if (held_back == 0) {
    spdlog::warn("upstream {}: {}: {}{}{}", name, addr, to_string(what), sep, reason);
  } else {
    spdlog::warn("upstream {}: {}: {}{}{} ({} more since the last line, {:.1f} s ago)", name, addr, to_string(what), sep,
                 reason, held_back, std::chrono::duration<double>(since).count());
  }
}

void UpstreamPool::flush_failure_log(size_t node, Clock::time_point now) {
  Node& n = nodes_[node];
  uint32_t held_back = 0;
  Clock::duration since{};
  if (!n.failure_log.flush_due(now, kFailureLogInterval, held_back, since)) return;
  const std::string reason = n.last_failure_ec ? n.last_failure_ec.message() : std::string();
  spdlog::warn("upstream {}: {}: {} more failures since the last line, {:.1f} s ago (the latest: {}{}{})", config().name,
               upstream_->nodes[node].address, held_back, std::chrono::duration<double>(since).count(),
               to_string(n.last_failure), n.last_failure_ec ? ": " : "", reason);
}

void UpstreamPool::release(UpstreamConnection* conn, bool reusable) {
  --active_;
  conn->buffer.release_if_empty(buffers_);
  const auto& cfg = config();
  Node& n = nodes_[conn->node];
  if (conn->io.is_tls() && conn->requests == 1 && reusable && cfg.tls.session_reuse) {
    // After the first response the server's session ticket (TLS 1.3) has been read: keep it for
    // the next connection to this node.
    if (SSL_SESSION* s = SSL_get1_session(conn->io.ssl())) {
      if (SSL_SESSION_is_resumable(s)) {
        if (n.tls_session) SSL_SESSION_free(n.tls_session);
        n.tls_session = s;
      } else {
        SSL_SESSION_free(s);
      }
    }
  }
  if (!reusable || conn->timed_out || !conn->buffer.empty() || conn->requests >= cfg.keepalive_max_requests ||
      !conn->io.socket().is_open()) {
    destroy(conn);
    return;
  }
  if (successor_ != nullptr) {
    // Retired by a reload that changed the node list: the pool serving the upstream now takes it.
    if (!successor_->take_released(conn, upstream_->nodes[conn->node].address)) destroy(conn);
    return;
  }
  if (n.idle_count >= cfg.keepalive_max_idle) {
    destroy(conn);
    return;
  }
  park(conn);
  // Not watched yet: under load a parked connection is taken again within microseconds, and a
  // watch armed and completed per request was a reactor operation per request for nothing. The
  // sweep starts watching the ones still parked at its next tick (at most 100 ms from now).
}

bool UpstreamPool::watch(UpstreamConnection* conn) {
  // A parked connection becomes readable only when the upstream closes it (or misbehaves by
  // sending unrequested bytes): either way it must not be reused. The wait is for the next
  // readiness edge, and an edge that came while nothing waited (a close right after the response
  // was read) is not seen again: so look first. The wait stays pending when the connection is
  // taken out again and completes with the next response; that completion can run after the
  // connection was parked again, so it looks again rather than trusting the readiness.
  if (conn->io.has_input()) {
    discard_idle(conn);
    return false;
  }
  conn->watching = true;
  uint32_t gen = ++conn->watch_generation;
  conn->io.async_wait_readable([conn, gen](boost::system::error_code ec) {
    conn->watching = false;
    if (ec || conn->state != ConnState::idle || conn->watch_generation != gen) return;
    conn->pool->watch(conn);
  });
  return true;
}

void UpstreamPool::discard_idle(UpstreamConnection* conn) {
  Node& n = nodes_[conn->node];
  n.idle.erase(n.idle.iterator_to(*conn));
  --n.idle_count;
  destroy(conn);
}

void UpstreamPool::destroy(UpstreamConnection* conn) {
  conn->io.close();
  conn->state = ConnState::closed;
  conn->PoolHook::unlink();
  conn->AllHook::unlink();
  conn->buffer.reset(&buffers_);
  // Closing completed any pending operation with operation_aborted; those handlers are already
  // queued, so freeing after them (posted later, same thread, FIFO) keeps their pointer valid.
  asio::post(ioc_, [conn] { delete conn; });
}

void UpstreamPool::close_idle() {
  if (h2_) h2_->close_idle();
  for (auto& n : nodes_) {
    while (!n.idle.empty()) {
      UpstreamConnection* conn = &n.idle.front();
      n.idle.pop_front();
      destroy(conn);
    }
    n.idle_count = 0;
  }
}

bool UpstreamPool::same_but_nodes(const config::UpstreamConfig& a, const config::UpstreamConfig& b) {
  // (Compared as settings, no copy: copying two 2,000-node configs was most of what a reload cost
  // a worker.)
  return a.protocol == config::UpstreamProtocol::http1 &&
         static_cast<const config::UpstreamSettings&>(a) == static_cast<const config::UpstreamSettings&>(b);
}

size_t UpstreamPool::node_of(std::string_view address) {
  if (node_index_.empty()) {
    node_index_.reserve(upstream_->nodes.size());
    for (size_t j = 0; j < upstream_->nodes.size(); ++j) node_index_.emplace(upstream_->nodes[j].address, j);
  }
  auto it = node_index_.find(address);
  return it == node_index_.end() ? SIZE_MAX : it->second;
}

bool UpstreamPool::take_released(UpstreamConnection* conn, std::string_view address) {
  if (h2_) return false;
  const size_t node = node_of(address);
  if (node == SIZE_MAX) return false;
  Node& to = nodes_[node];
  if (to.idle_count >= config().keepalive_max_idle) return false;
  move_in(conn, node);
  park(conn);
  return true;
}

void UpstreamPool::move_in(UpstreamConnection* conn, size_t node) {
  conn->AllHook::unlink();
  all_.push_back(*conn);
  conn->pool = this;  // (a pending watch completes into this pool)
  conn->node = node;
}

void UpstreamPool::park(UpstreamConnection* conn) {
  Node& n = nodes_[conn->node];
  conn->buffer.reset(&buffers_);
  conn->arm(ConnState::idle, coarse_now());
  n.idle.push_front(*conn);
  ++n.idle_count;
}

void UpstreamPool::take_idle_from(UpstreamPool& old) {
  if (h2_ || old.h2_) return;
  const auto max_idle = config().keepalive_max_idle;
  for (size_t i = 0; i < old.nodes_.size(); ++i) {
    Node& from = old.nodes_[i];
    if (from.idle_count == 0 && !from.tls_session) continue;
    const size_t node = node_of(old.upstream_->nodes[i].address);
    if (node == SIZE_MAX) continue;
    Node& to = nodes_[node];
    std::swap(to.tls_session, from.tls_session);
    while (!from.idle.empty() && to.idle_count < max_idle) {
      UpstreamConnection* conn = &from.idle.back();  // oldest last: kept in order
      from.idle.pop_back();
      --from.idle_count;
      move_in(conn, node);  // parked as it was (its idle deadline kept)
      to.idle.push_front(*conn);
      ++to.idle_count;
    }
  }
}

void UpstreamPool::sweep(Clock::time_point now) {
  if (h2_) h2_->sweep(now);
  // (Not `now`: a forced stop sweeps with the end of time.)
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].failure_log.held_back() != 0) flush_failure_log(i, coarse_now());
  }
  for (auto it = all_.begin(); it != all_.end();) {
    UpstreamConnection& c = *it++;
    // Parked since the last tick: from now on watched (or discarded, if the upstream closed it).
    if (c.state == ConnState::idle && !c.watching && c.deadline > now && !watch(&c)) continue;
    if (c.deadline > now) continue;
    if (c.state == ConnState::idle) {
      discard_idle(&c);
    } else if (c.state != ConnState::closed && !c.timed_out) {
      spdlog::debug("upstream {} {}: {} timeout", upstream_->config->name, upstream_->nodes[c.node].address,
                    to_string(c.state));
      c.timed_out = true;
      c.deadline = Clock::time_point::max();
      c.io.cancel();
    }
  }
}

}  // namespace turnpike::upstream
