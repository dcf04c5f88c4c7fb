// One HTTP/2 connection to an upstream node: an nghttp2 client session driven by our own reads
// and writes on a tls::Transport (plain TCP for h2c, TLS with ALPN h2 for h2).
//
// One coroutine (run) connects, then reads: each read goes through nghttp2_session_mem_recv,
// whose callbacks store response heads, body bytes and trailers in the H2Streams and wake their
// requests. Writes are made synchronously by flush() (mem_send output gathered into one buffer,
// one write); only when the socket is full does a second coroutine wait for writability.
//
// Lifetime: created and listed by its H2UpstreamPool; close() fails the streams still on it and unlists
// it; the object deletes itself once its coroutines have returned (the pool may be gone by then:
// orphan()).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/intrusive/list.hpp>
#include <array>
#include <chrono>
#include <string>

#include "turnpike/tls/transport.h"
#include "turnpike/upstream/h2.h"

namespace turnpike::upstream {

// The request body provider's copy step (a friend of H2UpstreamStream).
struct H2UpstreamBodyReader {
  static ssize_t read(H2UpstreamStream& s, uint8_t* buf, size_t length, uint32_t* data_flags);
};

class H2UpstreamConnection {
 public:
  using Clock = std::chrono::steady_clock;

  enum class State : uint8_t {
    connecting,  // TCP connect, TLS handshake, preface exchange until the upstream's SETTINGS (connect timeout)
    ready,       // the upstream's SETTINGS arrived; streams may be submitted
    closed,      // socket closed, streams failed; deleted once its coroutines return
  };

  H2UpstreamConnection(boost::asio::io_context& ioc, H2UpstreamPool& pool, size_t node);
  ~H2UpstreamConnection();
  H2UpstreamConnection(const H2UpstreamConnection&) = delete;
  H2UpstreamConnection& operator=(const H2UpstreamConnection&) = delete;

  void start();
  size_t node() const { return node_; }
  State state() const { return state_; }
  bool ready() const { return state_ == State::ready; }
  size_t stream_count() const { return stream_count_; }
  // Takes one more stream: not closing, no GOAWAY, below min(configured, peer's) concurrency.
  bool has_room() const;
  // min(configured streams per connection, the upstream's MAX_CONCURRENT_STREAMS once known).
  uint32_t capacity() const;

  void attach(H2UpstreamStream* s);
  // A stream that never got submitted leaves without a trace on the wire.
  void detach_unsubmitted(H2UpstreamStream* s);
  bool submit(H2UpstreamStream* s, bool has_body);
  void resume_body(H2UpstreamStream* s);
  void consume(H2UpstreamStream* s, size_t n);
  // The request is done with a stream nghttp2 still has open: give back its window, reset it.
  void cancel(H2UpstreamStream* s);
  // The request's client went away: reset the stream now if it is on the wire.
  void abort(H2UpstreamStream* s);
  // Writes everything nghttp2 has to send (or starts the writer coroutine when the socket is full).
  void flush();
  void sweep(Clock::time_point now);
  // Graceful when idle: GOAWAY, then close.
  void shutdown();
  void close(H2UpstreamFailure why);
  // The pool is going away: close without reporting back to it.
  void orphan();

  // ---- nghttp2 callbacks (static trampolines in h2_connection.cc call these) ----
  int on_begin_headers(const nghttp2_frame* frame);
  int on_header(const nghttp2_frame* frame, std::string_view name, std::string_view value);
  int on_frame_recv(const nghttp2_frame* frame);
  int on_data_chunk(int32_t stream_id, const uint8_t* data, size_t len);
  int on_stream_close(int32_t stream_id, uint32_t error_code);
  int on_frame_sent(const nghttp2_frame* frame);
  int on_frame_not_sent(const nghttp2_frame* frame);
  H2UpstreamStream* stream_for(int32_t id);

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<boost::system::error_code> establish();
  boost::asio::awaitable<void> write_when_ready();
  void stream_closed(H2UpstreamStream* s, uint32_t error_code);
  // Warns (rate-limited, UpstreamPool::report_failure) that the connection could not be set up.
  void report_connect_failure(boost::system::error_code ec);
  void task_done();
  void arm(Clock::time_point now);

  boost::asio::io_context& ioc_;
  H2UpstreamPool* pool_;
  size_t node_;
  tls::Transport io_;
  nghttp2_session* session_ = nullptr;
  State state_ = State::connecting;
  bool timed_out_ = false;       // the sweep cancelled the connect
  bool goaway_ = false;          // the upstream sent GOAWAY: no new streams here
  int32_t goaway_last_id_ = 0;
  bool writer_active_ = false;   // write_when_ready is waiting for the socket
  bool in_recv_ = false;         // inside mem_recv: no flush from callbacks
  int tasks_ = 0;                // coroutines still running (run, write_when_ready)
  size_t stream_count_ = 0;
  uint64_t served_ = 0;          // streams completed on this connection
  Clock::time_point deadline_ = Clock::time_point::max();        // connect, or idle
  Clock::time_point write_deadline_ = Clock::time_point::max();  // while write_when_ready waits
  boost::intrusive::list<H2UpstreamStream, boost::intrusive::base_hook<H2UpstreamStreamHook>,
                         boost::intrusive::constant_time_size<false>> streams_;
  std::string out_;              // gathered mem_send output
  size_t out_off_ = 0;           // written part of out_
  std::array<uint8_t, 16384> in_;
};

}  // namespace turnpike::upstream
