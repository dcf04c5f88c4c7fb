// HTTP/2 client connections at rest: what an idle connection gives up, and the callback it waits
// in. (HTTP/1.1 connections park the same way: downstream_h1.cc park().)
//
// A connection with no stream open for a second (at once when the worker has many connections)
// retires its warm stream objects (each with its waiting loop), frees its output buffer and header
// scratch, and, once the last stream loop has ended, its own coroutine ends too: a readiness
// callback holding only the connection waits for the client. What stays is the connection object,
// nghttp2's session (its HPACK tables and stream state are the connection's) and the transport.
// The next frame from the client, a timer (idle timeout, drain) or wake() starts a fresh
// coroutine, which reads first.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "h2_connection.h"

namespace turnpike::proxy {

void H2Connection::prepare_park() {
  if (dead_ || park_wanted_) return;
  park_wanted_ = true;
  for (H2Stream* s : free_streams_) retire(s);  // their loops end (posted), then wake() us
  std::vector<H2Stream*>().swap(free_streams_);
  if (out_pos_ == out_.size()) {
    std::string().swap(out_);
    out_pos_ = 0;
  }
  std::vector<nghttp2_nv>().swap(nv_);
  std::string().swap(nv_names_);
  if (snapshots_.size() == 1 && snapshots_.front().streams == 0) {
    // The connection's own snapshot_ keeps the current one alive; no stream holds this.
    std::vector<SnapshotUse>().swap(snapshots_);
  }
  wake();
}

bool H2Connection::can_park() const {
  return !dead_ && live_count_ == 0 && pipelines_ == 0 && loops_ == 0 && goaway_ == H2Goaway::none && !wake_ &&
         out_pos_ == out_.size() && !nghttp2_session_want_write(session_) && !transport_->read_buffered();
}

void H2Connection::park(std::unique_ptr<H2Connection> self) {
  H2Connection& c = *self;
  c.parked_ = true;
  c.waiting_read_ = true;  // wake() cancels this wait, as it does the loop's
  c.transport_->async_wait_readable([self = std::move(self)](boost::system::error_code ec) mutable {
    H2Connection& c = *self;
    c.parked_ = false;
    c.waiting_read_ = false;
    boost::asio::co_spawn(c.worker_.io(), serve(std::move(self), ec), boost::asio::detached);
  });
}

}  // namespace turnpike::proxy
