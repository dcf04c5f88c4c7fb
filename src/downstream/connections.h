// Client connections as a worker sees them, whatever their protocol: the list the deadline sweep
// walks, the idle list drain and the connection limit close from, the partial-head list the limit
// closes the slowest from. DownstreamWorker is a worker's data path (proxy::Worker) plus these.
//
// Worker thread only; nothing here takes a lock.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/intrusive/list.hpp>
#include <chrono>
#include <string>

#include "turnpike/proxy/worker.h"
#include "turnpike/tls/transport.h"

namespace turnpike::proxy {

using tcp = asio::ip::tcp;

using DownstreamHook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
using IdleHook = boost::intrusive::list_base_hook<boost::intrusive::tag<struct IdleTag>,
                                                  boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
using HeadHook = boost::intrusive::list_base_hook<boost::intrusive::tag<struct HeadTag>,
                                                  boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// The client's address as text, "ip:port" (empty if the socket has no peer); `ip_len` is the
// length of the ip part.
std::string peer_text(const tcp::socket& socket, size_t& ip_len);

// A client connection (HTTP/1.1, HTTP/2, a TLS handshake in progress): listed for the deadline
// sweep, on the idle list while it waits between requests so drain and the connection limit can
// close it, and on the partial-head list while it waits for the rest of a request head, so the
// connection limit can close the slowest.
class ClientConnection : public DownstreamHook, public IdleHook, public HeadHook {
 public:
  virtual ~ClientConnection() = default;
  // The deadline passed: fail what the connection waits for (and count it).
  virtual void expire() = 0;
  // Drain, or the connection limit: close now if nothing is in flight (HTTP/2: GOAWAY).
  virtual void close_if_idle() = 0;
  // Many connections: an idle connection waiting in its coroutine should park instead.
  virtual void request_park() {}
  // The connection limit: close now, the rest of the request head has been awaited too long.
  virtual void close_slow() {}
  // A new snapshot was applied (HTTP/2 sends GOAWAY when its listener changed).
  virtual void snapshot_changed() {}
  Clock::time_point deadline() const { return deadline_; }
  // When the connection started waiting for the rest of a request head (on the partial-head list).
  Clock::time_point head_since() const { return head_since_; }

 protected:
  friend class DownstreamWorker;  // sets head_since_ with the list, and the connection series
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point head_since_{};
  // The connection series it counts in (metrics/shard.h): its listener's id (none when metrics
  // are off or the listener is gone) and what it speaks.
  uint32_t listener_series_ = kNoSeries;
  metrics::ConnProtocol protocol_ = metrics::ConnProtocol::pending;
  static constexpr uint32_t kNoSeries = ~uint32_t{0};
};

class DownstreamWorker : public Worker {
 public:
  using Worker::Worker;

  bool draining() const { return draining_; }
  // The drain timeout ran out (force stop): expire() calls now mean "close", not "deadline passed".
  bool stopping() const { return stopping_; }
  // Above this many connections, idle ones are parked without a coroutine (less memory per
  // idle connection, a little more CPU per request); below it they wait in their coroutine.
  static constexpr size_t kParkAbove = 256;
  bool many_connections() const { return connection_count_ > kParkAbove; }

  // `listener` and `protocol`: the connection series it counts in (pending until known).
  void add_connection(ClientConnection& c, std::string_view listener,
                      metrics::ConnProtocol protocol = metrics::ConnProtocol::pending);
  void connection_closed(ClientConnection& c);
  // A pending connection's protocol became known (its first request; once).
  void set_protocol(ClientConnection& c, metrics::ConnProtocol protocol) {
    if (c.protocol_ == protocol) return;
    if (c.listener_series_ != ClientConnection::kNoSeries) {
      metrics().connection_settled(c.listener_series_, c.protocol_, protocol);
    }
    c.protocol_ = protocol;
  }
  void mark_idle(ClientConnection& c) { idle_.push_back(c); }
  void mark_busy(ClientConnection& c) { c.IdleHook::unlink(); }
  // A request head arrived in part and the connection waits for the rest; mark_head_read when
  // it is complete (or the wait ended). Heads that arrive whole never go on this list.
  void mark_partial_head(ClientConnection& c);
  void mark_head_read(ClientConnection& c) { c.HeadHook::unlink(); }
  // At the connection limit, a partial head waited for this long may be closed for a new client.
  static constexpr auto kSlowHeadGrace = std::chrono::seconds(1);

 protected:
  ~DownstreamWorker() = default;
  // Room for one more connection under limits.max_connections_per_worker, closing the oldest idle
  // one, or else the one stuck longest in a request head, if need be. False: refuse the new one.
  bool make_room_for_connection();
  // The sweep: parks idle connections when there are many, expires those past their deadline.
  void sweep_connections(Clock::time_point now);
  // Drain: from now on connection_closed() calls connections_drained() once none is left; idle
  // connections close (after a short grace in which a request that arrives is still served).
  void drain_connections();
  // The drain timeout ran out: expire() means "close" from now on (stopping()).
  void set_stopping() { stopping_ = true; }
  // Calls expire() on every connection.
  void expire_connections();
  // Tells every connection that a new snapshot was applied.
  void connections_snapshot_changed();
  size_t connection_count() const { return connection_count_; }
  // Draining, and the last connection closed.
  virtual void connections_drained() {}

 private:
  bool draining_ = false;
  bool stopping_ = false;
  boost::intrusive::list<ClientConnection, boost::intrusive::base_hook<DownstreamHook>,
                         boost::intrusive::constant_time_size<false>> connections_;
  boost::intrusive::list<ClientConnection, boost::intrusive::base_hook<IdleHook>,
                         boost::intrusive::constant_time_size<false>> idle_;  // oldest first
  boost::intrusive::list<ClientConnection, boost::intrusive::base_hook<HeadHook>,
                         boost::intrusive::constant_time_size<false>> partial_heads_;  // oldest first
  size_t connection_count_ = 0;
};

}  // namespace turnpike::proxy
