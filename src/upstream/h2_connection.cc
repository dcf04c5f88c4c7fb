// One HTTP/2 upstream connection: connect (and TLS), the nghttp2 client session, reading,
// writing, flow control, GOAWAY, stream and connection failure. See h2_connection.h.
//
// Hot path: response bytes are read into the connection's own 16 KiB array and handed to
// nghttp2; body bytes are appended to the stream's pooled buffer (bounded by the stream window,
// since the window is reopened only as the request consumes them). Output is gathered into one
// buffer per flush and written with one call. No lock; allocation only by nghttp2's streams.
#include "h2_connection.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <cstring>

#include "turnpike/common/nghttp2_mem.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

namespace {

using boost::system::error_code;
namespace aerr = boost::asio::error;

constexpr int32_t kStreamWindow = 256 * 1024;        // per stream: what one slow client can hold
constexpr int32_t kConnectionWindow = 16 * 1024 * 1024;
constexpr size_t kMaxFieldBytes = 256 * 1024;        // response head or trailers, decoded
constexpr size_t kWriteGather = 64 * 1024;           // mem_send output gathered per write
constexpr std::string_view kAlpnH2 = "\x02h2";

bool would_block(const error_code& ec) { return ec == aerr::would_block || ec == aerr::try_again; }

H2UpstreamConnection* self(void* user_data) { return static_cast<H2UpstreamConnection*>(user_data); }

int on_begin_headers_cb(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  return self(user_data)->on_begin_headers(frame);
}
int on_header_cb(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                 const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
  return self(user_data)->on_header(frame, {reinterpret_cast<const char*>(name), namelen},
                                    {reinterpret_cast<const char*>(value), valuelen});
}
int on_frame_recv_cb(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  return self(user_data)->on_frame_recv(frame);
}
int on_data_chunk_cb(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* user_data) {
  return self(user_data)->on_data_chunk(stream_id, data, len);
}
int on_stream_close_cb(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
  return self(user_data)->on_stream_close(stream_id, error_code);
}
int on_frame_send_cb(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  return self(user_data)->on_frame_sent(frame);
}
int on_frame_not_send_cb(nghttp2_session*, const nghttp2_frame* frame, int, void* user_data) {
  return self(user_data)->on_frame_not_sent(frame);
}

// The request body provider: copies the caller's pieces into nghttp2's frame; DEFERRED when it
// has taken them all and more are to come (resume_body restarts it).
ssize_t read_body_cb(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* data_flags,
                     nghttp2_data_source* source, void* user_data) {
  auto* s = static_cast<H2UpstreamStream*>(source->ptr);
  H2UpstreamStream* known = self(user_data)->stream_for(stream_id);
  if (known != s || s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // request gone: reset
  return H2UpstreamBodyReader::read(*s, buf, length, data_flags);
}

}  // namespace

// Kept out of the anonymous namespace so H2UpstreamStream can befriend it.
ssize_t H2UpstreamBodyReader::read(H2UpstreamStream& s, uint8_t* buf, size_t length, uint32_t* data_flags) {
  size_t n = 0;
  while (n < length && s.piece_ < s.body.size()) {
    std::string_view p = s.body[s.piece_];
    size_t take = std::min(length - n, p.size() - s.offset_);
    if (take > 0) std::memcpy(buf + n, p.data() + s.offset_, take);
    n += take;
    s.offset_ += take;
    if (s.offset_ == p.size()) {
      ++s.piece_;
      s.offset_ = 0;
    }
  }
  if (s.piece_ >= s.body.size()) {
    if (s.body_end) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    }
    s.notify();       // the request may read the next pieces from its client
    s.notify_body();  // (or its body pump, when it runs beside the response)
    if (n == 0) {
      s.deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

H2UpstreamConnection::H2UpstreamConnection(boost::asio::io_context& ioc, H2UpstreamPool& pool, size_t node)
    : ioc_(ioc), pool_(&pool), node_(node), io_(boost::asio::ip::tcp::socket(ioc)) {}

H2UpstreamConnection::~H2UpstreamConnection() {
  if (session_) nghttp2_session_del(session_);
}

uint32_t H2UpstreamConnection::capacity() const {
  uint32_t limit = pool_->owner().config().h2_max_streams_per_connection;
  if (state_ == State::ready) {
    limit = std::min(limit, nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS));
  }
  return limit;
}

bool H2UpstreamConnection::has_room() const {
  if (state_ == State::closed || goaway_) return false;
  return stream_count_ < capacity();
}

void H2UpstreamConnection::arm(Clock::time_point now) {
  const auto& cfg = pool_->owner().config();
  if (state_ == State::connecting) deadline_ = now + cfg.connect_timeout;
  else if (stream_count_ == 0) deadline_ = now + cfg.keepalive_idle_timeout;
  else deadline_ = Clock::time_point::max();
}

void H2UpstreamConnection::start() {
  ++tasks_;
  arm(Clock::now());
  boost::asio::co_spawn(ioc_, run(), boost::asio::detached);
}

void H2UpstreamConnection::attach(H2UpstreamStream* s) {
  streams_.push_back(*s);
  ++stream_count_;
  s->conn_ = this;
  s->reused_connection = served_ > 0;
  if (state_ == State::ready) deadline_ = Clock::time_point::max();
}

void H2UpstreamConnection::detach_unsubmitted(H2UpstreamStream* s) {
  s->H2UpstreamStreamHook::unlink();
  s->conn_ = nullptr;
  --stream_count_;
  if (state_ == State::ready) arm(Clock::now());
}

// ---- connect and read ----

boost::asio::awaitable<error_code> H2UpstreamConnection::establish() {
  const auto& up = pool_->owner().upstream();
  auto [ec] = co_await io_.socket().async_connect(up.nodes[node_].endpoint,
                                                  boost::asio::as_tuple(boost::asio::use_awaitable));
  if (ec) co_return ec;
  error_code ignored;
  io_.socket().non_blocking(true, ignored);
  io_.socket().set_option(boost::asio::ip::tcp::no_delay(true), ignored);
  if (up.tls) {
    SSL* ssl = up.tls->new_session(up.nodes[node_].host, kAlpnH2, nullptr);
    if (!ssl) co_return aerr::no_memory;
    io_.start_tls(ssl);
    ec = co_await io_.handshake();
    if (ec) co_return ec;
    // ALPN must have picked h2: an upstream that speaks only HTTP/1.1 here is misconfigured.
    if (io_.alpn() != "h2") co_return aerr::no_protocol_option;
  }
  co_return error_code{};
}

boost::asio::awaitable<void> H2UpstreamConnection::run() {
  error_code ec = co_await establish();
  if (state_ == State::closed) {  // orphaned while connecting
    task_done();
    co_return;
  }
  if (ec) {
    report_connect_failure(ec);
    close(H2UpstreamFailure::connect_failed);
    task_done();
    co_return;
  }

  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers_cb);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_cb);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close_cb);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send_cb);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send_cb);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // The window is reopened only when the client side took the bytes: backpressure per stream.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, pool_->owner().config().h2_max_streams_per_connection);
  int rv = nghttp2_session_client_new3(&session_, cbs, this, opt, nghttp2_small_block_mem());
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    close(H2UpstreamFailure::connect_failed);
    task_done();
    co_return;
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(kMaxFieldBytes)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  flush();  // our preface; the connection is ready when the upstream's SETTINGS arrive

  // Reads until the socket would block, and waits only then. A short read is not enough to stop
  // at: when the node writes and closes at once (a frame, then FIN), both may come in one
  // readiness edge, and the end of stream stays queued behind the bytes a short read took. The
  // edge wait (tls/edge_wait.h) would not be woken for it again, and the streams would hang until
  // their read timeout (a 504) instead of failing at once (a 502).
  H2UpstreamFailure why = H2UpstreamFailure::connection_lost;
  bool wait = true;  // the node speaks only after our preface
  while (state_ != State::closed) {
    if (wait) {
      ec = co_await io_.wait_readable();
      if (ec || state_ == State::closed) break;
    }
    size_t got = io_.read_some(in_.data(), in_.size(), ec);
    wait = would_block(ec);
    if (wait) continue;
    if (ec) break;  // eof or reset
    in_recv_ = true;
    ssize_t used = nghttp2_session_mem_recv(session_, in_.data(), got);
    in_recv_ = false;
    if (used < 0) {
      spdlog::debug("upstream {} {}: h2 protocol error: {}", pool_->owner().config().name,
                    pool_->owner().upstream().nodes[node_].address, nghttp2_strerror(static_cast<int>(used)));
      why = H2UpstreamFailure::reset;
      flush();  // nghttp2 may have a GOAWAY to send
      break;
    }
    flush();
    if (goaway_ && stream_count_ == 0) break;
    if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) break;
  }
  if (why == H2UpstreamFailure::reset && pool_) {
    if (auto* c = pool_->counters().streams_reset) c->inc();
  }
  // Connected, but the node's SETTINGS never came (timeout, or a close before them).
  if (state_ == State::connecting && pool_) report_connect_failure(ec ? ec : aerr::eof);
  close(why);
  task_done();
}

void H2UpstreamConnection::report_connect_failure(error_code ec) {
  // The handshake started only once TCP had connected: a failure after it is a TLS (or ALPN) one.
  const NodeFailure what = timed_out_ ? NodeFailure::connect_timeout
                                      : (io_.is_tls() ? NodeFailure::tls_failed : NodeFailure::connect_failed);
  pool_->owner().report_failure(node_, what, timed_out_ ? error_code{} : ec);
}

// ---- write ----

void H2UpstreamConnection::flush() {
  if (writer_active_ || in_recv_ || state_ == State::closed || !session_) return;
  for (;;) {
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
      while (out_.size() < kWriteGather) {
        const uint8_t* data = nullptr;
        ssize_t n = nghttp2_session_mem_send(session_, &data);
        if (n < 0) {
          close(H2UpstreamFailure::connection_lost);
          return;
        }
        if (n == 0) break;
        out_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      }
      if (out_.empty()) return;
      if (state_ == State::closed) return;  // a callback closed the connection
    }
    error_code ec;
    boost::asio::const_buffer buf(out_.data() + out_off_, out_.size() - out_off_);
    size_t n = io_.write_some(std::span<const boost::asio::const_buffer>(&buf, 1), ec);
    if (ec && !would_block(ec)) {
      close(H2UpstreamFailure::connection_lost);
      return;
    }
    out_off_ += n;
    if (out_off_ < out_.size()) {
      // The socket is full: wait for it without holding up the caller.
      writer_active_ = true;
      write_deadline_ = Clock::now() + pool_->owner().config().send_timeout;
      ++tasks_;
      boost::asio::co_spawn(ioc_, write_when_ready(), boost::asio::detached);
      return;
    }
  }
}

boost::asio::awaitable<void> H2UpstreamConnection::write_when_ready() {
  while (state_ != State::closed && out_off_ < out_.size()) {
    error_code ec = co_await io_.wait_writable();
    if (ec || state_ == State::closed) break;
    boost::asio::const_buffer buf(out_.data() + out_off_, out_.size() - out_off_);
    size_t n = io_.write_some(std::span<const boost::asio::const_buffer>(&buf, 1), ec);
    if (ec && !would_block(ec)) {
      close(H2UpstreamFailure::connection_lost);
      break;
    }
    out_off_ += n;
    if (n > 0 && pool_) write_deadline_ = Clock::now() + pool_->owner().config().send_timeout;
  }
  writer_active_ = false;
  if (state_ != State::closed) flush();
  task_done();
}

// ---- streams ----

bool H2UpstreamConnection::submit(H2UpstreamStream* s, bool has_body) {
  nghttp2_data_provider provider{};
  provider.source.ptr = s;
  provider.read_callback = read_body_cb;
  int32_t id =
      nghttp2_submit_request(session_, nullptr, s->nva.data(), s->nva.size(), has_body ? &provider : nullptr, s);
  if (id < 0) {
    // Stream IDs used up, or the session is closing: nothing new goes on this connection.
    goaway_ = true;
    s->failure = H2UpstreamFailure::refused;
    detach_unsubmitted(s);
    return false;
  }
  s->id_ = id;
  s->h2_closed_ = false;
  if (auto* c = pool_->counters().streams_opened) c->inc();
  flush();
  return true;
}

void H2UpstreamConnection::resume_body(H2UpstreamStream* s) {
  if (s->deferred_) {
    s->deferred_ = false;
    nghttp2_session_resume_data(session_, s->id_);
  }
  flush();
}

void H2UpstreamConnection::consume(H2UpstreamStream* s, size_t n) {
  n = std::min<uint64_t>(n, s->unconsumed_);
  s->unconsumed_ -= n;
  nghttp2_session_consume(session_, s->id_, n);
  flush();
}

void H2UpstreamConnection::cancel(H2UpstreamStream* s) {
  if (s->unconsumed_ > 0) {
    nghttp2_session_consume(session_, s->id_, s->unconsumed_);
    s->unconsumed_ = 0;
  }
  if (!s->reset_sent_) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id_, NGHTTP2_CANCEL);
  flush();  // may close the stream now (and recycle it: the caller must not touch it after)
}

void H2UpstreamConnection::abort(H2UpstreamStream* s) {
  if (s->id_ < 0 || s->h2_closed_ || s->reset_sent_ || state_ != State::ready || !session_) return;
  s->reset_sent_ = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id_, NGHTTP2_CANCEL);
  flush();
}

H2UpstreamStream* H2UpstreamConnection::stream_for(int32_t id) {
  if (!session_) return nullptr;
  auto* s = static_cast<H2UpstreamStream*>(nghttp2_session_get_stream_user_data(session_, id));
  // A recycled stream may be serving another request now: it must be this stream on this connection.
  if (s == nullptr || s->id_ != id || s->conn_ != this) return nullptr;
  return s;
}

int H2UpstreamConnection::on_begin_headers(const nghttp2_frame* frame) {
  H2UpstreamStream* s = stream_for(frame->hd.stream_id);
  if (s) s->begin_block(s->headers_done);  // after the final head: trailers
  return 0;
}

int H2UpstreamConnection::on_header(const nghttp2_frame* frame, std::string_view name, std::string_view value) {
  H2UpstreamStream* s = stream_for(frame->hd.stream_id);
  if (!s) return 0;
  if (!name.empty() && name[0] == ':') {
    // nghttp2 has checked the pseudo-header set (RFC 9113 §8.3.2): :status is three digits.
    if (name == ":status" && value.size() == 3) {
      s->pending_status_ = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    }
    return 0;
  }
  if (s->field_bytes_.size() + s->trailer_bytes_.size() + name.size() + value.size() > kMaxFieldBytes) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream: a 502 for the request
  }
  s->add_field(name, value);
  return 0;
}

int H2UpstreamConnection::on_frame_recv(const nghttp2_frame* frame) {
  switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
      // The upstream's preface: it speaks HTTP/2, and its stream limit is known before any
      // request is submitted (a burst must not overrun a small MAX_CONCURRENT_STREAMS).
      if (state_ == State::connecting && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        state_ = State::ready;
        arm(Clock::now());
        if (auto* c = pool_->counters().connections_opened) c->inc();
        for (auto& s : streams_) s.notify();
      }
      return 0;
    case NGHTTP2_GOAWAY:
      goaway_ = true;
      goaway_last_id_ = frame->goaway.last_stream_id;
      if (auto* c = pool_->counters().goaways_received) c->inc();
      spdlog::debug("upstream {} {}: GOAWAY last_stream_id={} error={}", pool_->owner().config().name,
                    pool_->owner().upstream().nodes[node_].address, goaway_last_id_, frame->goaway.error_code);
      return 0;
    case NGHTTP2_HEADERS: {
      H2UpstreamStream* s = stream_for(frame->hd.stream_id);
      if (!s) return 0;
      if (s->in_trailers_) {
        s->end_block();
      } else if (s->pending_status_ >= 200) {
        s->status = s->pending_status_;
        s->end_block();
        s->headers_done = true;
        s->notify();
      }  // else an interim 1xx head: dropped (the next block starts over)
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        s->end_stream = true;
        s->notify();
      }
      return 0;
    }
    case NGHTTP2_DATA: {
      H2UpstreamStream* s = stream_for(frame->hd.stream_id);
      if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        s->end_stream = true;
        s->notify();
      }
      return 0;
    }
    default:
      return 0;
  }
}

int H2UpstreamConnection::on_data_chunk(int32_t stream_id, const uint8_t* data, size_t len) {
  H2UpstreamStream* s = stream_for(stream_id);
  if (!s || s->owner_done_) {
    nghttp2_session_consume(session_, stream_id, len);  // nobody reads it: keep the window open
    return 0;
  }
  s->incoming_.append(reinterpret_cast<const char*>(data), len);
  s->unconsumed_ += len;
  s->notify();
  return 0;
}

int H2UpstreamConnection::on_frame_sent(const nghttp2_frame* frame) {
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (H2UpstreamStream* s = stream_for(frame->hd.stream_id)) s->headers_sent_ = true;
  }
  return 0;
}

int H2UpstreamConnection::on_frame_not_sent(const nghttp2_frame* frame) {
  // A request HEADERS that could not go (GOAWAY arrived, or the session is closing): the upstream
  // never saw the request.
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (H2UpstreamStream* s = stream_for(frame->hd.stream_id)) stream_closed(s, NGHTTP2_REFUSED_STREAM);
  }
  return 0;
}

int H2UpstreamConnection::on_stream_close(int32_t stream_id, uint32_t error_code) {
  if (H2UpstreamStream* s = stream_for(stream_id)) stream_closed(s, error_code);
  return 0;
}

void H2UpstreamConnection::stream_closed(H2UpstreamStream* s, uint32_t error_code) {
  s->h2_closed_ = true;
  if (s->unconsumed_ > 0 && session_) {
    // The stream is gone; its bytes still count against the connection window until consumed.
    nghttp2_session_consume_connection(session_, s->unconsumed_);
    s->unconsumed_ = 0;
  }
  if (s->failure == H2UpstreamFailure::none && !(s->end_stream && error_code == NGHTTP2_NO_ERROR)) {
    if (s->timed_out) {
      s->failure = H2UpstreamFailure::timed_out;
    } else if (!s->headers_done && (error_code == NGHTTP2_REFUSED_STREAM || !s->headers_sent_ ||
                                    (goaway_ && s->id_ > goaway_last_id_))) {
      s->failure = H2UpstreamFailure::refused;  // RFC 9113 §8.7: not processed, safe to retry
    } else {
      s->failure = H2UpstreamFailure::reset;
      if (!s->owner_done_ && pool_) {
        if (auto* c = pool_->counters().streams_reset) c->inc();
      }
    }
    s->reset_code = error_code;
  }
  s->H2UpstreamStreamHook::unlink();
  s->conn_ = nullptr;
  --stream_count_;
  ++served_;
  if (stream_count_ == 0 && state_ == State::ready) arm(Clock::now());
  if (s->owner_done_) {
    if (pool_) pool_->recycle(s);
  } else {
    s->notify();
    s->notify_body();
  }
}

// ---- timeouts and closing ----

void H2UpstreamConnection::sweep(Clock::time_point now) {
  if (state_ == State::connecting) {
    if (deadline_ <= now && !timed_out_) {
      timed_out_ = true;
      io_.cancel();
    }
    return;
  }
  if (state_ != State::ready) return;
  if (writer_active_ && write_deadline_ <= now) {
    // The upstream stopped reading: nothing (not even a reset) can go out on this connection.
    for (auto& s : streams_) {
      if (s.failure == H2UpstreamFailure::none) s.failure = H2UpstreamFailure::timed_out;
      s.timed_out = true;
    }
    close(H2UpstreamFailure::timed_out);
    return;
  }
  if (stream_count_ == 0 && (deadline_ <= now || goaway_)) {
    shutdown();
    return;
  }
  bool expired = false;
  for (auto& s : streams_) {
    if (s.deadline > now || s.timed_out || s.id_ < 0) continue;
    // Failed now, not when the reset has gone out: the socket may be full.
    s.timed_out = true;
    if (s.failure == H2UpstreamFailure::none) s.failure = H2UpstreamFailure::timed_out;
    s.deadline = Clock::time_point::max();
    s.reset_sent_ = true;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id_, NGHTTP2_CANCEL);
    s.notify();
    s.notify_body();
    expired = true;
  }
  if (expired) flush();
}

void H2UpstreamConnection::shutdown() {
  if (state_ == State::ready && session_) {
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
    flush();
  }
  close(H2UpstreamFailure::connection_lost);
}

void H2UpstreamConnection::close(H2UpstreamFailure why) {
  if (state_ == State::closed) return;
  const bool connecting = state_ == State::connecting;
  state_ = State::closed;
  io_.close();
  if (!streams_.empty() && pool_) {
    if (!connecting) {
      if (auto* c = pool_->counters().connections_lost) c->inc();
    }
  }
  while (!streams_.empty()) {
    H2UpstreamStream* s = &streams_.front();
    s->H2UpstreamStreamHook::unlink();
    s->conn_ = nullptr;
    s->h2_closed_ = true;
    s->unconsumed_ = 0;
    if (s->failure == H2UpstreamFailure::none) {
      if (connecting) {
        s->failure = H2UpstreamFailure::connect_failed;
        s->timed_out = timed_out_;
      } else if (!s->headers_sent_ || s->id_ < 0) {
        s->failure = H2UpstreamFailure::refused;  // never reached the upstream
      } else if (!(s->end_stream)) {
        s->failure = why == H2UpstreamFailure::none ? H2UpstreamFailure::connection_lost : why;
      }
    }
    if (s->owner_done_) {
      if (pool_) pool_->recycle(s);
    } else {
      s->notify();
      s->notify_body();
    }
  }
  stream_count_ = 0;
  if (pool_) pool_->connection_gone(this);
  pool_ = nullptr;  // the pool may go before this object's coroutines have returned
}

void H2UpstreamConnection::orphan() {
  pool_->connection_gone(this);
  // Streams still listed belong to the pool, which is going away with them: just let go.
  while (!streams_.empty()) {
    H2UpstreamStream* s = &streams_.front();
    s->H2UpstreamStreamHook::unlink();
    s->conn_ = nullptr;
  }
  stream_count_ = 0;
  pool_ = nullptr;
  state_ = State::closed;
  io_.close();
}

void H2UpstreamConnection::task_done() {
  if (--tasks_ > 0 || state_ != State::closed) return;
  // Handlers of operations the close aborted may still be queued: free after them.
  boost::asio::post(ioc_, [this] { delete this; });
}

}  // namespace turnpike::upstream
