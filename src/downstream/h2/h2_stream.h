// One HTTP/2 request stream as the pipeline sees it: a Downstream, like an HTTP/1.1 connection.
//
// The stream owns the bytes its RequestContext points into (the decoded header block, received
// DATA), so the views stay valid for the request's whole life. Objects are recycled by their
// connection: a stream's strings and vectors keep their capacity across requests.
//
// Hot path: no socket here. Request DATA is copied once, from the read buffer into body_in_;
// response pieces are copied once, by nghttp2's data callback straight into the frame it builds.
// Nothing takes a lock; a warmed-up stream allocates nothing.
#pragma once

#include <nghttp2/nghttp2.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/intrusive/list.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <span>
#include <string>
#include <vector>

#include "turnpike/proxy/downstream.h"
#include "turnpike/proxy/request_context.h"
#include "downstream/connections.h"
#include "turnpike/proxy/wake_event.h"

namespace turnpike::proxy {

class H2Connection;

// What a stream's pipeline waits for; picks the timeout and the counter.
enum class H2StreamWait : unsigned char {
  none,  // not waiting on the client
  body,  // read_body: the next DATA (limits.body_timeout)
  send,  // send_*: flow-control window to send the response (limits.send_timeout)
};
std::string_view to_string(H2StreamWait w) noexcept;

using StreamHook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

class H2Stream final : public Downstream, public StreamHook {
 public:
  explicit H2Stream(H2Connection& conn) : conn_(conn) {}

  // ---- Downstream ----
  boost::asio::awaitable<boost::system::error_code> read_body(RequestContext& ctx) override;
  void preread_body(RequestContext& ctx) override;
  bool start_head(RequestContext& ctx, const ResponseOut& head, std::span<const std::string_view> body, bool end,
                  boost::system::error_code& ec) override;
  boost::asio::awaitable<boost::system::error_code> finish_send(RequestContext& ctx) override { return wait_sent(ctx); }
  boost::asio::awaitable<boost::system::error_code> send_body(RequestContext& ctx,
                                                              std::span<const std::string_view> body, bool end) override;
  boost::asio::awaitable<boost::system::error_code> send_trailers(RequestContext& ctx,
                                                                  std::span<const http::Header> trailers) override;
  // read_body and send_* wait on separate events, so the request body may be pumped while the
  // response is being sent (gRPC bidi streaming).
  bool can_pump_body_concurrently() const override { return true; }
  void cancel_body_read() override;

 private:
  friend class H2Connection;
  friend struct H2Callbacks;

  // A field of the request's header block: offsets into arena_ (stable while it grows).
  struct FieldRef {
    uint32_t name_off = 0, name_len = 0, value_off = 0, value_len = 0;
  };

  void reset_for(int32_t id, const Snapshot* snapshot);
  std::string_view text(uint32_t off, uint32_t len) const { return {arena_.data() + off, len}; }
  // Hands the received DATA to the pipeline (ctx.body_views).
  void take_received(RequestContext& ctx);
  bool length_mismatch(const RequestContext& ctx) const;
  // Gives nghttp2 back the window for body bytes the pipeline has finished with.
  void release_taken();
  // Waits until nghttp2 has taken every queued response piece (and the end, when given).
  boost::asio::awaitable<boost::system::error_code> wait_sent(RequestContext& ctx);
  // The whole response (head, body, end of stream) has been handed to nghttp2, or to the stream
  // itself (owned_).
  bool response_complete() const { return no_body_ || (submitted_ && end_ && (eof_sent_ || owned_)); }
  // Whether a whole response body of `size` bytes may be copied into the stream (owned_), so the
  // pipeline can finish without waiting for nghttp2 to take it: small, and within the flow-control
  // windows, so that nothing but the socket can hold it up.
  bool can_own(size_t size) const;
  static constexpr size_t kMaxOwnedBody = 8 * 1024;
  // The stream lets go of an owned body (sent, or the stream is gone).
  void drop_owned();
  bool all_sent() const { return piece_ >= pieces_.size() && (!end_ || eof_sent_); }
  // The read side (read_body) and the send side (send_*) have a deadline each: both may be
  // waiting at once.
  void arm(H2StreamWait w, Clock::duration timeout);
  void disarm(H2StreamWait w) {
    (w == H2StreamWait::body ? read_deadline_ : send_deadline_) = Clock::time_point::max();
  }
  void disarm() { read_deadline_ = send_deadline_ = Clock::time_point::max(); }
  Clock::time_point deadline() const { return std::min(read_deadline_, send_deadline_); }
  // nghttp2's data source callback for the response body.
  static ssize_t read_data(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source* source, void* user_data);

  H2Connection& conn_;
  int32_t id_ = 0;
  const Snapshot* snapshot_ = nullptr;  // the one this request started with (kept by the connection)
  RequestContext* ctx_ = nullptr;             // while the pipeline runs

  // ---- Request head, as decoded ----
  std::string arena_;                  // every field name and value, back to back
  std::vector<FieldRef> fields_;       // regular fields in order
  FieldRef method_, scheme_, authority_, path_, host_;
  uint8_t pseudo_seen_ = 0;            // bit per pseudo-header / host (see h2_session.cc)
  uint64_t header_list_size_ = 0;      // decoded size of the block being received (RFC 9113 §6.5.2)
  int64_t content_length_ = -1;
  bool in_trailers_ = false;           // receiving the request's trailer block (dropped)
  bool too_large_ = false;             // header list above max_header_list_size: answered 431
  bool malformed_ = false;             // reset with PROTOCOL_ERROR (RFC 9113 §8.1.1)
  bool expect_continue_ = false;
  bool unknown_expectation_ = false;

  // ---- Request body ----
  std::string body_in_;                // received, not yet given to the pipeline
  std::string body_out_;               // given to the pipeline (ctx.body_views point here)
  size_t taken_unconsumed_ = 0;        // bytes of body_out_ whose window nghttp2 has not got back
  bool remote_closed_ = false;         // END_STREAM received
  bool sent_continue_ = false;

  // ---- Response ----
  std::span<const std::string_view> pieces_;  // being sent; valid while the pipeline waits
  size_t piece_ = 0;                   // next piece to copy
  size_t piece_off_ = 0;               // bytes of pieces_[piece_] already copied
  std::span<const http::Header> trailers_;
  bool trailers_pending_ = false;
  bool submitted_ = false;             // response HEADERS submitted
  bool end_ = false;                   // the pipeline gave the last piece
  bool eof_sent_ = false;              // nghttp2 has the end of the response (END_STREAM queued)
  bool deferred_ = false;              // the data callback returned DEFERRED: resume_data needed
  bool no_body_ = false;               // the response ended with its HEADERS
  // A whole small response body copied by start_head (pieces_ = {&owned_view_, 1}): the pipeline
  // did not wait for nghttp2 to take it and may already be gone.
  bool owned_ = false;
  std::string owned_body_;
  std::string_view owned_view_;
  size_t owned_left_ = 0;              // owned bytes nghttp2 has not taken yet
  char status_[3];

  // ---- Lifecycle ----
  // The stream object's coroutine (H2Connection::stream_loop) runs one request's pipeline after
  // another: between requests it waits on start_event_, and the object is recycled with it, so a
  // request starts without a co_spawn. An object with a loop is deleted by its loop only
  // (retire_ tells it to end).
  bool has_loop_ = false;
  bool retire_ = false;
  WakeEvent start_event_;
  int start_status_ = 0;               // non-zero: answer with this error instead of the pipeline
  std::string_view start_code_, start_message_;
  bool closed_ = false;                // nghttp2 closed the stream (or the connection died)
  uint32_t close_code_ = 0;            // RST_STREAM error code it closed with
  bool pipeline_running_ = false;
  bool timed_out_ = false;             // a client timeout ended it (reset with CANCEL)
  bool reset_submitted_ = false;       // we submitted RST_STREAM (nghttp2 closes it once sent)
  Clock::time_point read_deadline_ = Clock::time_point::max();  // read_body waiting for DATA
  Clock::time_point send_deadline_ = Clock::time_point::max();  // send_* waiting for the window
  // One event per side: a request body pump may be in read_body while the pipeline is in send_*.
  WakeEvent read_event_;                 // read_body: DATA, END_STREAM, reset, close, timeout, cancel
  WakeEvent send_event_;                 // send_*: pieces taken, reset, close, timeout
};

}  // namespace turnpike::proxy
