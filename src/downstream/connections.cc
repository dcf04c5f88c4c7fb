// Client-connection bookkeeping of a worker: the connection limit, the idle list, drain.
#include "connections.h"

#include <spdlog/spdlog.h>

#include "turnpike/common/coarse_clock.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

std::string peer_text(const tcp::socket& socket, size_t& ip_len) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) {
    ip_len = 0;
    return {};
  }
  std::string text = ep.address().to_string();
  ip_len = text.size();
  text.push_back(':');
  text.append(std::to_string(ep.port()));
  return text;
}

bool DownstreamWorker::make_room_for_connection() {
  const auto max = snapshot()->config->limits.max_connections_per_worker;
  if (connection_count_ < max) return true;
  // At the limit the oldest idle keepalive connection makes way for the new one.
  if (!idle_.empty()) {
    ClientConnection& oldest = idle_.front();
    oldest.IdleHook::unlink();
    oldest.close_if_idle();
    counters().idle_closed_for_limit.inc();
    spdlog::debug("worker {}: connection limit reached, closed an idle connection", index());
    return true;
  }
  // Then the connection that has waited longest for the rest of a request head (slowloris), if
  // that is longer than a head takes on any working link: else a few hundred such connections
  // would lock every new client out until header_timeout.
  if (!partial_heads_.empty() && coarse_now() - partial_heads_.front().head_since() >= kSlowHeadGrace) {
    ClientConnection& slowest = partial_heads_.front();
    slowest.HeadHook::unlink();
    slowest.close_slow();
    counters().slow_closed_for_limit.inc();
    spdlog::debug("worker {}: connection limit reached, closed a connection stuck in a request head", index());
    return true;
  }
  return false;
}

void DownstreamWorker::add_connection(ClientConnection& c, std::string_view listener, metrics::ConnProtocol protocol) {
  connections_.push_back(c);
  ++connection_count_;
  counters().connections_active.inc();
  c.protocol_ = protocol;
  if (metrics().enabled()) {
    if (const ListenerRuntime* l = snapshot()->find_listener(listener)) {
      c.listener_series_ = l->series;
      metrics().connection_opened(l->series, protocol);
    }
  }
}

void DownstreamWorker::connection_closed(ClientConnection& c) {
  if (c.listener_series_ != ClientConnection::kNoSeries) metrics().connection_closed(c.listener_series_, c.protocol_);
  c.DownstreamHook::unlink();
  c.IdleHook::unlink();
  --connection_count_;
  counters().connections_active.dec();
  if (draining_ && connection_count_ == 0) connections_drained();
}

void DownstreamWorker::mark_partial_head(ClientConnection& c) {
  c.head_since_ = coarse_now();
  partial_heads_.push_back(c);
}

void DownstreamWorker::sweep_connections(Clock::time_point now) {
  if (many_connections()) {
    for (auto& c : idle_) c.request_park();
  }
  for (auto it = connections_.begin(); it != connections_.end();) {
    ClientConnection& c = *it++;
    if (c.deadline() <= now) c.expire();
  }
}

void DownstreamWorker::drain_connections() {
  draining_ = true;
  // Idle connections close after a short grace in which a request that arrives is still served
  // (DownstreamConnection::close_if_idle); HTTP/2 ones send GOAWAY.
  while (!idle_.empty()) {
    ClientConnection& c = idle_.front();
    c.IdleHook::unlink();
    c.close_if_idle();
  }
}

void DownstreamWorker::expire_connections() {
  for (auto it = connections_.begin(); it != connections_.end();) (it++)->expire();
}

void DownstreamWorker::connections_snapshot_changed() {
  for (auto it = connections_.begin(); it != connections_.end();) (it++)->snapshot_changed();
}

}  // namespace turnpike::proxy
