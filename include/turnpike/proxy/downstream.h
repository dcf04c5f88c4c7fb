// The client side of one request, as the protocol-neutral pipeline sees it.
//
// HTTP/1.1 connections (downstream_h1) and HTTP/2 streams (h2_stream) implement it. The
// pipeline never touches a socket or a framing detail: it reads decoded body bytes and hands over
// a response head and body pieces; the implementation frames them for its protocol and applies
// backpressure by completing only when the bytes are on their way.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "turnpike/http/types.h"

namespace turnpike::tls {
class Transport;
}

namespace turnpike::proxy {

struct RequestContext;

// A response head handed to the client side. Header views must stay valid until the send is over.
struct ResponseOut {
  int status = 200;
  std::string_view reason;                       // empty: the standard phrase
  const std::vector<http::Header>* headers = nullptr;  // end-to-end fields to pass (may be null)
  std::optional<uint64_t> content_length;        // known body length; nullopt: streamed
  bool no_body = false;                          // HEAD, 204, 304: send no body whatever the length
  bool keep_content_length_header = false;       // no_body: pass the upstream's Content-Length as is
  std::string_view upgrade;                      // 101: the protocol switched to (Upgrade field)
};

class Downstream {
 public:
  virtual ~Downstream() = default;

  // Next pieces of the decoded request body, in ctx.body_views. Returns an error on a client
  // failure or timeout; empty ctx.body_views with ctx.body_done means the body has ended.
  virtual boost::asio::awaitable<boost::system::error_code> read_body(RequestContext& ctx) = 0;
  // Body bytes that arrived with the head, without another read (may be all of the body).
  virtual void preread_body(RequestContext& ctx) = 0;

  // Writes the response head with the first body pieces; `end` when they are the whole body.
  // In two halves, so that the usual response, which the socket (or the HTTP/2 stream) takes at
  // once, costs no coroutine: start_head does all that needs no waiting and returns true when the
  // send is over, with its result in `ec`; otherwise the caller co_awaits finish_send() for the
  // rest. Either way the pieces must stay valid until the send is over.
  virtual bool start_head(RequestContext& ctx, const ResponseOut& head, std::span<const std::string_view> body,
                          bool end, boost::system::error_code& ec) = 0;
  virtual boost::asio::awaitable<boost::system::error_code> finish_send(RequestContext& ctx) = 0;
  // Both halves, for callers off the hot path.
  boost::asio::awaitable<boost::system::error_code> send_head(RequestContext& ctx, const ResponseOut& head,
                                                              std::span<const std::string_view> body, bool end) {
    boost::system::error_code ec;
    if (start_head(ctx, head, body, end, ec)) co_return ec;
    co_return co_await finish_send(ctx);
  }
  // Writes more body pieces; `end` on the last call (pieces may then be empty).
  virtual boost::asio::awaitable<boost::system::error_code> send_body(
      RequestContext& ctx, std::span<const std::string_view> body, bool end) = 0;
  // Ends the response with trailer fields (gRPC's grpc-status, for one), instead of a send_body
  // with `end`. HTTP/1.1 writes them after the last chunk when the body is chunked and drops them
  // otherwise; HTTP/2 sends them as a HEADERS frame with END_STREAM.
  virtual boost::asio::awaitable<boost::system::error_code> send_trailers(
      RequestContext& ctx, std::span<const http::Header> trailers) = 0;

  // Whether read_body may be in flight while send_* runs (the request body pumped concurrently
  // with the response, as gRPC bidi streaming needs). HTTP/2 streams can; HTTP/1.1 stays
  // sequential.
  virtual bool can_pump_body_concurrently() const { return false; }
  // Makes a pending read_body return operation_aborted now (the response ended while the client
  // was still sending). Without a pending read_body it does nothing: the caller checks its own
  // stop flag after every read.
  virtual void cancel_body_read() {}

  // The pipeline waits for the upstream's answer (begin) / has it or gave up (end). A client side
  // that would not otherwise notice its client leaving meanwhile (HTTP/1.1: nothing reads the
  // socket then) checks for that and calls ctx.abort_upstream(). HTTP/2 streams learn it from
  // the stream's reset and do nothing here.
  virtual void upstream_wait_begin(RequestContext& ctx) {}
  virtual void upstream_wait_end() {}

  // Protocol upgrades (WebSocket): whether this client side can turn into a byte tunnel after a
  // 101 response. HTTP/1.1 can; an HTTP/2 stream cannot (ctx.upgrade stays empty there).
  virtual bool can_tunnel() const { return false; }
  // After send_head with a 101: relays bytes both ways between the client and `upstream` until
  // both sides have ended, or either fails, or nothing moves for `idle_timeout`. `upstream_early`
  // holds bytes the upstream sent right behind its 101 head.
  virtual boost::asio::awaitable<boost::system::error_code> tunnel(RequestContext& ctx, tls::Transport& upstream,
                                                                   std::string_view upstream_early,
                                                                   std::chrono::milliseconds idle_timeout) {
    co_return boost::asio::error::operation_not_supported;
  }
};

}  // namespace turnpike::proxy
