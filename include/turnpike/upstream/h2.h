// HTTP/2 towards upstreams (h2c, and h2 over TLS): per worker and per upstream, a set of
// connections per node, each carrying many concurrent streams.
//
// The proxy layer drives one H2UpstreamStream per request: open_stream() reserves a slot on a connection
// with room (opening one when all are full, counting connections still being set up, so a burst
// of requests does not open a connection each), fills the stream's request fields, submit()s it,
// feeds the body through `body`, and reads the response the connection's reader coroutine stores
// in the stream, waking the request with notify(). Nothing here knows RequestContext.
//
// Threading: everything belongs to one worker thread. Hot path: streams are pooled with their
// buffers, so a warmed-up pool allocates only what nghttp2 allocates per stream; no lock.
// Timeouts follow UpstreamPool: a deadline stored per stream and per connection, enforced by the
// worker's periodic sweep.
#pragma once

#include <nghttp2/nghttp2.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "turnpike/common/counter.h"
#include "turnpike/http/types.h"

namespace turnpike::upstream {

class UpstreamPool;
class H2UpstreamConnection;
class H2UpstreamPool;
struct H2UpstreamBodyReader;

// The worker's counters this pool adds to (they live in the proxy layer's WorkerCounters).
struct H2UpstreamCounters {
  Counter* connections_opened = nullptr;  // connections established (after SETTINGS were sent)
  Counter* streams_opened = nullptr;      // requests submitted
  Counter* goaways_received = nullptr;
  Counter* streams_reset = nullptr;       // streams the upstream reset or broke (protocol errors)
  Counter* connections_lost = nullptr;    // connections that failed or closed with streams open
};

// Why a stream ended without a complete response. Printable with to_string.
enum class H2UpstreamFailure : uint8_t {
  none,             // no failure (yet)
  connect_failed,   // its connection could not be established (timed_out tells a timeout)
  refused,          // the upstream did not process it (GOAWAY above last-stream-id, REFUSED_STREAM, never sent)
  connection_lost,  // the connection closed or broke while the stream was open
  reset,            // the upstream reset the stream or broke HTTP/2 rules in it
  timed_out,        // the sweep cancelled it (read/send timeout, or the request's own deadline)
  aborted,          // the request's client went away; the stream was reset (CANCEL)
};
std::string_view to_string(H2UpstreamFailure f) noexcept;

using H2UpstreamStreamHook = boost::intrusive::list_base_hook<boost::intrusive::tag<struct H2UpstreamStreamTag>,
                                                      boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

class H2UpstreamStream : public H2UpstreamStreamHook {
 public:
  using Clock = std::chrono::steady_clock;
  explicit H2UpstreamStream(boost::asio::io_context& ioc) : waker_(ioc), body_waker_(ioc) {}

  // ---- Request: filled by the caller between open_stream and submit ----
  std::vector<nghttp2_nv> nva;  // pseudo-headers first; nghttp2 copies it in submit
  std::string nv_bytes;         // backing store for built names/values: reserve before taking pointers

  // ---- Request body: set_body() points the stream at the next pieces (`end`: the last ones),
  // then H2UpstreamPool::resume_body(). The pieces must stay valid until body_taken(): the data provider
  // copies them into DATA frames as flow control allows.
  void set_body(std::span<const std::string_view> pieces, bool end) {
    body = pieces;
    body_end = end;
    piece_ = 0;
    offset_ = 0;
  }
  std::span<const std::string_view> body;
  bool body_end = false;
  bool body_taken() const { return piece_ >= body.size(); }

  // ---- Response, stored by the connection ----
  int status = 0;                          // final status once headers_done
  bool headers_done = false;               // final response head received (headers valid)
  bool end_stream = false;                 // the whole response (and trailers) received
  std::vector<http::Header> headers;       // lower-case names; views into the stream's storage
  std::vector<http::Header> trailers;
  // Response body bytes received and not taken yet. take_body() hands them over (valid until the
  // next take_body); consumed(n) — through H2UpstreamPool::consume — reopens the flow-control window.
  std::string_view take_body();
  bool has_body() const { return !incoming_.empty(); }

  // ---- Outcome ----
  H2UpstreamFailure failure = H2UpstreamFailure::none;
  bool timed_out = false;       // the sweep expired it (connect or read/send deadline)
  uint32_t reset_code = 0;      // RST_STREAM / GOAWAY error code from the upstream
  bool reused_connection = false;  // its connection had carried streams before this one
  size_t node() const { return node_; }  // the node it was opened to (an index into the pool's nodes)

  // ---- Deadlines: the sweep fails the stream past `deadline`; `hard_deadline` (a gRPC client's
  // own deadline) caps every deadline armed.
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point hard_deadline = Clock::time_point::max();
  void arm(Clock::duration d, Clock::time_point now) { deadline = std::min(now + d, hard_deadline); }

  // Waits until the connection reports something for this stream (a notify since the last wait).
  boost::asio::awaitable<void> wait();
  void notify();
  // A second waiter, for a request body pump running beside the coroutine in wait(): wakes when
  // the data provider has taken the pieces set with set_body, and when the stream fails or closes
  // (a notify_body since the last wait_body). One waiter per waker: a wait cancels any other.
  boost::asio::awaitable<void> wait_body();
  void notify_body();

  // The request's client went away: reset the stream (CANCEL) now, fail it as `aborted` and wake
  // its waiters. The owner still finish()es it.
  void abort();

 private:
  friend class H2UpstreamConnection;
  friend class H2UpstreamPool;
  friend struct H2UpstreamBodyReader;
  struct FieldRef {
    uint32_t name_off, name_len, value_off, value_len;
  };
  void reset_for_reuse();
  void begin_block(bool trailers);
  void add_field(std::string_view name, std::string_view value);
  void end_block();

  boost::asio::steady_timer waker_;
  boost::asio::steady_timer body_waker_;
  bool signaled_ = false;
  bool body_signaled_ = false;
  H2UpstreamConnection* conn_ = nullptr;  // null once nghttp2 closed the stream or the connection died
  H2UpstreamPool* pool_ = nullptr;
  int32_t id_ = -1;
  size_t node_ = 0;
  bool owner_done_ = false;       // the request let go of it (see H2UpstreamPool::finish)
  bool h2_closed_ = true;         // nghttp2 no longer knows it
  bool headers_sent_ = false;
  bool reset_sent_ = false;       // we submitted RST_STREAM already (timeout or abort)
  bool deferred_ = false;         // the data provider returned DEFERRED: resume when body arrives
  bool in_trailers_ = false;
  int pending_status_ = 0;
  size_t piece_ = 0, offset_ = 0; // data provider position in `body`
  uint64_t unconsumed_ = 0;       // received bytes not yet consumed (flow control)
  std::string field_bytes_, trailer_bytes_;
  std::vector<FieldRef> refs_;
  std::string incoming_, taken_;
};

class H2UpstreamPool {
 public:
  using Clock = std::chrono::steady_clock;
  H2UpstreamPool(boost::asio::io_context& ioc, UpstreamPool& owner, const H2UpstreamCounters& counters);
  ~H2UpstreamPool();
  H2UpstreamPool(const H2UpstreamPool&) = delete;
  H2UpstreamPool& operator=(const H2UpstreamPool&) = delete;

  // A stream on a ready connection to `node` with room for it. On failure the stream comes back
  // with failure == connect_failed (and timed_out for a connect timeout); finish() it either way.
  boost::asio::awaitable<H2UpstreamStream*> open_stream(size_t node, Clock::time_point hard_deadline);
  // Submits stream->nva (with a body provider when has_body) and writes what can go now.
  // False when nghttp2 refuses it (the stream is then failed as refused).
  bool submit(H2UpstreamStream* s, bool has_body);
  // New pieces are in s->body: lets the provider take them and writes.
  void resume_body(H2UpstreamStream* s);
  // The caller handed `n` body bytes on: reopens the window for as many.
  void consume(H2UpstreamStream* s, size_t n);
  // The caller is done with the stream: an open one is reset (CANCEL), then it returns to the
  // free list once nghttp2 lets go of it.
  void finish(H2UpstreamStream* s);

  // Timeouts (connect, stream read/send deadlines) and idle connections past the idle timeout.
  void sweep(Clock::time_point now);
  // Closes connections without streams (drain, reload retirement).
  void close_idle();
  // Streams handed out and not finished.
  size_t active() const { return active_; }
  size_t connections() const;

  // ---- For H2UpstreamConnection ----
  UpstreamPool& owner() { return owner_; }
  const H2UpstreamCounters& counters() const { return counters_; }
  void recycle(H2UpstreamStream* s);
  void connection_gone(H2UpstreamConnection* c);

 private:
  H2UpstreamConnection* connection_with_room(size_t node);

  boost::asio::io_context& ioc_;
  UpstreamPool& owner_;
  H2UpstreamCounters counters_;
  std::vector<H2UpstreamConnection*> connections_;  // few per node: a scan is cheapest; they delete themselves
  std::vector<std::unique_ptr<H2UpstreamStream>> streams_;  // every stream this pool made
  std::vector<H2UpstreamStream*> free_streams_;
  size_t active_ = 0;
};

}  // namespace turnpike::upstream
