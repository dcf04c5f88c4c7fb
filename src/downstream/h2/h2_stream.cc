// HTTP/2 streams as Downstreams: request body out of received DATA (window given back only as
// the pipeline takes it), response head and body into nghttp2 (completing when nghttp2 has copied
// the pieces into frames, so a client that stops reading stalls the pipeline by flow control).
//
// Hot path: the pipeline's body views are copied once, by read_data, into the DATA frame
// nghttp2 is building; no per-request allocation once the stream object is warm.
#include "h2_stream.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "h2_connection.h"
#include "turnpike/common/coarse_clock.h"

namespace turnpike::proxy {

using boost::system::error_code;

std::string_view to_string(H2StreamWait w) noexcept {
  switch (w) {
    case H2StreamWait::none: return "none";
    case H2StreamWait::body: return "body";
    case H2StreamWait::send: return "send";
  }
  return "unknown";
}

void H2Stream::reset_for(int32_t id, const Snapshot* snapshot) {
  id_ = id;
  snapshot_ = snapshot;
  ctx_ = nullptr;
  arena_.clear();
  if (arena_.capacity() < 1024) arena_.reserve(1024);
  fields_.clear();
  method_ = scheme_ = authority_ = path_ = host_ = {};
  pseudo_seen_ = 0;
  header_list_size_ = 0;
  content_length_ = -1;
  in_trailers_ = too_large_ = malformed_ = expect_continue_ = unknown_expectation_ = false;
  body_in_.clear();
  body_out_.clear();
  taken_unconsumed_ = 0;
  remote_closed_ = sent_continue_ = false;
  pieces_ = {};
  piece_ = piece_off_ = 0;
  trailers_ = {};
  trailers_pending_ = submitted_ = end_ = eof_sent_ = deferred_ = no_body_ = false;
  owned_ = false;
  owned_body_.clear();
  owned_view_ = {};
  owned_left_ = 0;
  closed_ = false;
  close_code_ = 0;
  pipeline_running_ = timed_out_ = reset_submitted_ = false;
  disarm();
}

void H2Stream::arm(H2StreamWait w, Clock::duration timeout) {
  Clock::time_point& d = w == H2StreamWait::body ? read_deadline_ : send_deadline_;
  d = coarse_now() + timeout;
  conn_.note_deadline(d);
}

void H2Stream::cancel_body_read() { read_event_.signal(conn_.worker().io(), boost::asio::error::operation_aborted); }

// ---------------------------------------------------------------------------------------------
// Request body
// ---------------------------------------------------------------------------------------------

void H2Stream::release_taken() {
  if (taken_unconsumed_ == 0) return;
  // The pipeline is done with the previous pieces: the client may send that much more. On a
  // closed stream nghttp2 credits the connection window only.
  if (nghttp2_session* session = conn_.session()) {
    nghttp2_session_consume(session, id_, taken_unconsumed_);
    conn_.wake();
  }
  taken_unconsumed_ = 0;
}

void H2Stream::take_received(RequestContext& ctx) {
  body_out_.swap(body_in_);
  body_in_.clear();
  taken_unconsumed_ = body_out_.size();
  ctx.body_views.push_back(body_out_);
  ctx.request_body_bytes += body_out_.size();
  ctx.body_done = remote_closed_;
}

bool H2Stream::length_mismatch(const RequestContext& ctx) const {
  // nghttp2 checks content-length against the DATA received (RFC 9113 §8.1.1); so do we.
  return ctx.head.framing == http::BodyFraming::content_length &&
         (ctx.request_body_bytes > ctx.head.content_length ||
          (remote_closed_ && body_in_.empty() && ctx.request_body_bytes != ctx.head.content_length));
}

void H2Stream::preread_body(RequestContext& ctx) {
  ctx.body_views.clear();
  release_taken();
  body_out_.clear();
  if (ctx.body_done || body_in_.empty()) return;
  take_received(ctx);
  if (length_mismatch(ctx)) {
    ctx.body_views.clear();
    ctx.body_done = false;  // read_body reports the error
  }
}

boost::asio::awaitable<error_code> H2Stream::read_body(RequestContext& ctx) {
  ctx.body_views.clear();
  release_taken();
  body_out_.clear();
  if (ctx.body_done) co_return error_code{};
  if (ctx.head.expect_continue && !sent_continue_ && !ctx.response_started && !closed_) {
    // RFC 9110 §10.1.1: the client may wait for this before it sends the body.
    sent_continue_ = true;
    const nghttp2_nv nv{reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
                        reinterpret_cast<uint8_t*>(const_cast<char*>("100")), 7, 3, NGHTTP2_NV_FLAG_NONE};
    if (nghttp2_session* session = conn_.session()) {
      nghttp2_submit_headers(session, NGHTTP2_FLAG_NONE, id_, nullptr, &nv, 1, nullptr);
      conn_.wake();
    }
  }
  for (;;) {
    if (length_mismatch(ctx)) co_return boost::asio::error::invalid_argument;
    if (!body_in_.empty()) {
      take_received(ctx);
      if (length_mismatch(ctx)) {
        ctx.body_views.clear();
        co_return boost::asio::error::invalid_argument;
      }
      co_return error_code{};
    }
    if (remote_closed_) {
      ctx.body_done = true;
      co_return error_code{};
    }
    if (closed_) co_return boost::asio::error::connection_reset;
    arm(H2StreamWait::body, snapshot_->config->limits.body_timeout);
    co_await read_event_.wait();
    disarm(H2StreamWait::body);
    if (read_event_.result()) co_return read_event_.result();
  }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

ssize_t H2Stream::read_data(nghttp2_session* session, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                            nghttp2_data_source* source, void*) {
  H2Stream& s = *static_cast<H2Stream*>(source->ptr);
  size_t n = 0;
  // (pieces_ is emptied when the pipeline ends, so piece_ may then be past its end.)
  while (n < length && s.piece_ < s.pieces_.size()) {
    std::string_view p = s.pieces_[s.piece_];
    size_t take = std::min(length - n, p.size() - s.piece_off_);
    if (take > 0) std::memcpy(buf + n, p.data() + s.piece_off_, take);
    n += take;
    s.piece_off_ += take;
    if (s.piece_off_ == p.size()) {
      ++s.piece_;
      s.piece_off_ = 0;
    }
  }
  if (s.owned_) {
    s.owned_left_ -= n;
    s.conn_.remove_owned(n);
  }
  if (s.piece_ >= s.pieces_.size()) {
    if (s.end_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      s.eof_sent_ = true;
      if (s.trailers_pending_) {
        s.trailers_pending_ = false;
        auto nv = s.conn_.trailer_nv(s.trailers_);
        if (!nv.empty() && nghttp2_submit_trailer(session, s.id_, nv.data(), nv.size()) == 0) {
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
      }
    } else if (n == 0) {
      s.deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    // Everything the pipeline gave is in frames now: it may reuse its buffers.
    s.send_event_.signal(s.conn_.worker().io());
  }
  return static_cast<ssize_t>(n);
}

boost::asio::awaitable<error_code> H2Stream::wait_sent(RequestContext& ctx) {
  while (!all_sent()) {
    if (closed_ || reset_submitted_) co_return boost::asio::error::connection_reset;
    if (deferred_) {
      deferred_ = false;
      if (nghttp2_session* session = conn_.session()) nghttp2_session_resume_data(session, id_);
    }
    conn_.wake();
    arm(H2StreamWait::send, snapshot_->config->limits.send_timeout);
    co_await send_event_.wait();
    disarm(H2StreamWait::send);
    if (send_event_.result()) co_return send_event_.result();
  }
  co_return error_code{};
}

bool H2Stream::start_head(RequestContext& ctx, const ResponseOut& head, std::span<const std::string_view> body,
                          bool end, error_code& ec) {
  nghttp2_session* session = conn_.session();
  if (closed_ || !session) {
    ec = boost::asio::error::connection_reset;
    return true;
  }
  int status = head.status;
  if (status < 100 || status > 999) status = 502;
  status_[0] = static_cast<char>('0' + status / 100);
  status_[1] = static_cast<char>('0' + status / 10 % 10);
  status_[2] = static_cast<char>('0' + status % 10);
  auto nv = conn_.response_nv(ctx, head, status_);
  no_body_ = head.no_body;
  if (!no_body_ && end) {
    no_body_ = true;  // empty final body: END_STREAM on the HEADERS frame
    for (auto p : body) no_body_ = no_body_ && p.empty();
  }
  pieces_ = no_body_ ? std::span<const std::string_view>() : body;
  if (!no_body_ && end) {
    size_t size = 0;
    for (auto p : body) size += p.size();
    if (can_own(size)) {
      // The usual small response: copied, so the pipeline finishes now instead of waiting for
      // the connection's next write (one copy of a few KiB against a suspension and wake-up).
      owned_body_.clear();
      for (auto p : body) owned_body_.append(p);
      owned_view_ = owned_body_;
      pieces_ = std::span<const std::string_view>(&owned_view_, 1);
      owned_ = true;
      owned_left_ = size;
      conn_.add_owned(size);
    }
  }
  piece_ = piece_off_ = 0;
  end_ = end || no_body_;
  eof_sent_ = no_body_;
  nghttp2_data_provider provider;
  provider.source.ptr = this;
  provider.read_callback = &H2Stream::read_data;
  int rv = nghttp2_submit_response(session, id_, nv.data(), nv.size(), no_body_ ? nullptr : &provider);
  if (rv != 0) {
    spdlog::debug("h2 stream {}: submit_response: {}", id_, nghttp2_strerror(rv));
    ec = boost::asio::error::connection_reset;
    return true;
  }
  submitted_ = true;
  ctx.response_started = true;
  conn_.wake();
  ec = {};
  return owned_ || all_sent();  // else finish_send waits for nghttp2 to take the pieces
}

bool H2Stream::can_own(size_t size) const {
  nghttp2_session* session = conn_.session();
  // With the request still coming in, the pipeline's end resets the stream (NO_ERROR, RFC 9113
  // §8.1), which must not overtake the body: such a response is sent the waiting way.
  if (size > kMaxOwnedBody || session == nullptr || !remote_closed_) return false;
  const int32_t stream_window = nghttp2_session_get_stream_remote_window_size(session, id_);
  const int32_t conn_window = nghttp2_session_get_remote_window_size(session);
  return stream_window >= 0 && conn_window >= 0 && size <= static_cast<size_t>(stream_window) &&
         conn_.owned_bytes() + size <= static_cast<size_t>(conn_window);
}

void H2Stream::drop_owned() {
  if (!owned_) return;
  conn_.remove_owned(owned_left_);
  owned_left_ = 0;
  owned_ = false;
  pieces_ = {};
  piece_ = piece_off_ = 0;
}

boost::asio::awaitable<error_code> H2Stream::send_body(RequestContext& ctx, std::span<const std::string_view> body,
                                                       bool end) {
  if (no_body_ || (end_ && eof_sent_)) co_return error_code{};  // nothing more may follow
  pieces_ = body;
  piece_ = piece_off_ = 0;
  end_ = end;
  co_return co_await wait_sent(ctx);
}

boost::asio::awaitable<error_code> H2Stream::send_trailers(RequestContext& ctx, std::span<const http::Header> trailers) {
  if (no_body_ || (end_ && eof_sent_)) co_return error_code{};
  // HEADERS with END_STREAM after the last DATA (RFC 9113 §8.1); submitted by read_data once the
  // body is all in frames.
  pieces_ = {};
  piece_ = piece_off_ = 0;
  trailers_ = trailers;
  trailers_pending_ = true;
  end_ = true;
  auto ec = co_await wait_sent(ctx);
  trailers_ = {};
  co_return ec;
}

}  // namespace turnpike::proxy
