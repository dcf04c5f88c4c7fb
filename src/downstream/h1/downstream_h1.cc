// HTTP/1.1 client connections: the read loop, request-head checks, body reading with
// backpressure, and response framing (Content-Length, chunked, or close-delimited for 1.0).
//
// Hot path: an idle connection waits for readability holding no buffer; reads and writes go
// straight between pooled buffers and the socket; the response head is serialized into the
// pooled context's string. No allocation after warm-up, no lock, no exceptions.
#include "downstream_h1.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <array>

#include "downstream/h2/downstream_h2.h"
#include "turnpike/proxy/headers.h"
#include "turnpike/common/coarse_clock.h"
#include "turnpike/proxy/io.h"
#include "turnpike/proxy/pipeline.h"
#include "turnpike/http/uri.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;

namespace {
constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
using boost::system::error_code;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
// RFC 9113 §3.4: the client connection preface, for h2c with prior knowledge.
constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// How often the sweep looks whether a client whose request the upstream is working on is still there.
constexpr auto kClientCheckInterval = std::chrono::milliseconds(100);
// Drain: how long an idle keepalive connection stays open for a request that may be on its way.
// RFC 9112 §9.6: a client can always send a request while our close is in flight; a client sending
// back-to-back will send within this, and gets its answer with `Connection: close`.
constexpr auto kDrainIdleGrace = std::chrono::seconds(1);
// Lingering close: how long, and how many bytes, we read and drop after our last answer.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 256 * 1024;
}  // namespace

std::string_view to_string(DownstreamWait w) noexcept {
  switch (w) {
    case DownstreamWait::none: return "none";
    case DownstreamWait::upstream: return "upstream";
    case DownstreamWait::handshake: return "handshake";
    case DownstreamWait::tunnel: return "tunnel";
    case DownstreamWait::idle: return "idle";
    case DownstreamWait::head: return "head";
    case DownstreamWait::body: return "body";
    case DownstreamWait::send: return "send";
  }
  return "unknown";
}

DownstreamConnection::DownstreamConnection(DownstreamWorker& worker, std::unique_ptr<Transport> transport, std::string listener,
                                           std::string client, size_t client_ip_len)
    : worker_(worker),
      transport_(std::move(transport)),
      listener_(std::move(listener)),
      remote_(std::move(client)),
      ip_len_(client_ip_len) {
  if (remote_.empty()) remote_ = peer_text(transport_->socket(), ip_len_);
  worker_.add_connection(*this, listener_);  // pending: until a request shows it is HTTP/1 (not h2c)
}

DownstreamConnection::~DownstreamConnection() {
  in_.reset(&worker_.buffers());
  aux_.reset(&worker_.buffers());
  worker_.connection_closed(*this);
}

void DownstreamConnection::arm(DownstreamWait w, Clock::duration timeout) {
  wait_ = w;
  deadline_ = coarse_now() + timeout;
}

void DownstreamConnection::upstream_wait_begin(RequestContext& ctx) {
  upstream_ctx_ = &ctx;
  arm(DownstreamWait::upstream, kClientCheckInterval);
}

void DownstreamConnection::upstream_wait_end() {
  upstream_ctx_ = nullptr;
  if (wait_ == DownstreamWait::upstream) disarm();
}

void DownstreamConnection::expire() {
  if (timed_out_) return;
  auto& c = worker_.counters();
  if (wait_ == DownstreamWait::upstream) {
    // Nothing reads the client while the upstream works: look whether it has closed (what nginx
    // answers with 499). A pipelined next request does not count; it just waits its turn.
    if (upstream_ctx_ && transport_->peer_gone()) {
      spdlog::debug("client {}: closed while the upstream was working", remote_);
      disarm();
      close_after_ = true;
      upstream_ctx_->abort_upstream();
    } else {
      deadline_ = Clock::now() + kClientCheckInterval;
    }
    return;
  }
  switch (wait_) {
    case DownstreamWait::head: c.header_timeouts.inc(); break;
    case DownstreamWait::body: c.body_timeouts.inc(); break;
    case DownstreamWait::send: c.send_timeouts.inc(); break;
    case DownstreamWait::idle:
      if (!worker_.draining()) c.keepalive_timeouts.inc();  // else the drain's grace ran out
      break;
    case DownstreamWait::handshake: c.tls_handshake_timeouts.inc(); break;
    case DownstreamWait::tunnel: c.tunnel_timeouts.inc(); break;
    case DownstreamWait::none:
    case DownstreamWait::upstream: return;
  }
  spdlog::debug("client {}: {} timeout", remote_, to_string(wait_));
  timed_out_ = true;
  deadline_ = Clock::time_point::max();
  transport_->cancel();
}

Clock::duration DownstreamConnection::limits_keepalive() const {
  const auto& limits = worker_.snapshot()->config->limits;
  const Clock::duration timeout = requests_ == 0 ? limits.header_timeout : limits.keepalive_timeout;
  return worker_.draining() ? std::min<Clock::duration>(timeout, kDrainIdleGrace) : timeout;
}

void DownstreamConnection::request_park() {
  if (wait_ != DownstreamWait::idle || parked_ || park_requested_) return;
  park_requested_ = true;
  transport_->cancel();
}

void DownstreamConnection::close_if_idle() {
  if (wait_ != DownstreamWait::idle) return;
  if (worker_.draining()) {
    // Not at once: a request may be in the socket already or on its way (see kDrainIdleGrace).
    // One that arrives is served with `Connection: close`; the sweep closes the others.
    deadline_ = std::min(deadline_, coarse_now() + kDrainIdleGrace);
    return;
  }
  timed_out_ = true;
  deadline_ = Clock::time_point::max();
  transport_->cancel();
}

void DownstreamConnection::close_slow() {
  if (wait_ != DownstreamWait::head || timed_out_) return;
  closed_slow_ = true;
  timed_out_ = true;
  deadline_ = Clock::time_point::max();
  transport_->cancel();
}

boost::asio::awaitable<error_code> DownstreamConnection::fill(IoBuffer& buffer, size_t limit) {
  if (!buffer.make_room(worker_.buffers(), limit)) co_return boost::asio::error::message_size;
  for (;;) {
    error_code ec;
    size_t got = transport_->read_some(buffer.tail(), buffer.tail_room(), ec);
    if (!ec) {
      buffer.commit(got);
      co_return error_code{};
    }
    if (ec != boost::asio::error::would_block && ec != boost::asio::error::try_again) co_return ec;
    if (!transport_->read_buffered()) {
      auto [wec] = co_await transport_->async_wait_readable(nothrow);
      if (wec) co_return wec;
    }
    if (timed_out_) co_return boost::asio::error::timed_out;
  }
}

// ---------------------------------------------------------------------------------------------
// The connection's life
// ---------------------------------------------------------------------------------------------

void DownstreamConnection::park(std::unique_ptr<DownstreamConnection> self) {
  // Waiting for the next request is a plain callback holding only the connection: no coroutine
  // frame and no buffer exist while a connection is idle.
  DownstreamConnection& c = *self;
  c.in_.reset(&c.worker_.buffers());
  c.aux_.reset(&c.worker_.buffers());
  if (c.wait_ != DownstreamWait::idle) c.arm(DownstreamWait::idle, c.limits_keepalive());  // else keep its deadline
  c.worker_.mark_idle(c);
  c.parked_ = true;
  wait_parked(std::move(self));
}

void DownstreamConnection::wait_parked(std::unique_ptr<DownstreamConnection> self) {
  DownstreamConnection& c = *self;
  c.transport_->park_wait(c.parked_wait_);
  self.release();  // the wait owns the connection now: parked_ready() or parked_gone()
}

void DownstreamConnection::parked_ready(DownstreamConnection* owner, error_code ec) {
  std::unique_ptr<DownstreamConnection> self(owner);
  DownstreamConnection& c = *self;
  bool closing = ec || c.timed_out_;
  if (closing) {
    closing = !c.arrived_before_close(ec);
  } else if (!c.take_arrival(ec)) {
    wait_parked(std::move(self));
    return;
  }
  c.parked_ = false;
  c.worker_.mark_busy(c);
  if (closing || ec) {
    c.close();
    return;  // `self` frees the connection
  }
  boost::asio::co_spawn(c.worker_.io(), serve(std::move(self)), boost::asio::detached);
}

void DownstreamConnection::parked_gone(DownstreamConnection* owner) { delete owner; }

bool DownstreamConnection::take_arrival(error_code& ec) {
  if (!in_.make_room(worker_.buffers(), BufferPool::kBlockSize)) {
    ec = boost::asio::error::no_buffer_space;
    return true;
  }
  const size_t got = transport_->read_some(in_.tail(), in_.tail_room(), ec);
  if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
    ec = {};
    in_.reset(&worker_.buffers());
    return false;
  }
  if (!ec) in_.commit(got);
  return true;
}

bool DownstreamConnection::arrived_before_close(error_code& ec) {
  if (!timed_out_ || !worker_.draining() || worker_.stopping()) return false;
  ec = {};
  if (!take_arrival(ec) || ec) return false;
  timed_out_ = false;
  return true;
}

boost::asio::awaitable<void> DownstreamConnection::start_tls(std::unique_ptr<DownstreamConnection> self,
                                                             std::chrono::milliseconds handshake_timeout) {
  DownstreamConnection& c = *self;
  auto& counters = c.worker_.counters();
  c.arm(DownstreamWait::handshake, handshake_timeout);
  const error_code ec = co_await c.transport_->handshake();
  c.disarm();
  if (ec || c.timed_out_) {
    if (!c.timed_out_) {
      counters.tls_handshake_failures.inc();
      spdlog::debug("client {}: TLS handshake failed: {}", c.remote_, ec.message());
    }
    c.close();
    co_return;
  }
  counters.tls_handshakes.inc();
  if (c.transport_->resumed()) counters.tls_resumed.inc();
  if (c.transport_->alpn() == "h2") {
    serve_h2(c.worker_, std::move(c.transport_), c.listener_, std::move(c.remote_), c.ip_len_, {});
    co_return;  // `self` goes; the HTTP/2 connection has the socket
  }
  co_await serve(std::move(self));
}

boost::asio::awaitable<void> DownstreamConnection::serve(std::unique_ptr<DownstreamConnection> self) {
  // (Kept as two statements: GCC 12 miscompiles a co_await inside an if condition here.)
  const bool idle = co_await self->run();
  if (idle) park(std::move(self));
}

void DownstreamConnection::close() { transport_->close(); }

boost::asio::awaitable<bool> DownstreamConnection::run() {
  auto& counters = worker_.counters();
  for (bool first = true;; first = false) {
    // ---- 1. nothing buffered: wait for the client's next request ----
    // With few connections the coroutine waits itself (cheapest per request). With many, the
    // connection is parked instead: no coroutine frame while idle (see park()); the sweep also
    // parks connections already waiting here once the worker crosses that threshold.
    // Draining too: a request on its way is served (limits_keepalive() gives it a short grace).
    if (in_.empty() && !first) {
      if (worker_.many_connections()) co_return true;
      in_.reset(&worker_.buffers());
      aux_.reset(&worker_.buffers());
      arm(DownstreamWait::idle, limits_keepalive());
      worker_.mark_idle(*this);
      error_code ec;
      for (;;) {
        if (!transport_->read_buffered()) {
          auto [wec] = co_await transport_->async_wait_readable(nothrow);
          ec = wec;
        }
        if (ec || timed_out_ || park_requested_ || take_arrival(ec)) break;
      }
      worker_.mark_busy(*this);
      if (park_requested_) {
        park_requested_ = false;
        co_return true;
      }
      if ((ec || timed_out_) && !arrived_before_close(ec)) break;
    }
    if (snapshot_.get() != worker_.snapshot().get()) snapshot_ = worker_.snapshot();
    const auto& limits = snapshot_->config->limits;
    arm(DownstreamWait::head, limits.header_timeout);

    // ---- 2. read and parse the head ----
    RequestContext& ctx = *worker_.acquire_context();
    struct Release {
      DownstreamWorker& w;
      RequestContext& c;
      ~Release() { w.release_context(&c); }
    } release{worker_, ctx};
    http::ParserLimits pl{limits.max_request_line, limits.max_header_bytes, limits.max_headers};
    http::ParseState ps;
    http::ParseError perr = http::ParseError::none;
    http::ParseStatus st = http::ParseStatus::incomplete;
    for (;;) {
      if (h2_preface_pending()) {
        if (in_.size() >= kH2Preface.size()) {
          serve_h2(worker_, std::move(transport_), listener_, std::move(remote_), ip_len_, in_.view());
          co_return false;  // the HTTP/2 connection has the socket and the bytes
        }
      } else if (!in_.empty()) {
        st = http::parse_request_head(in_.data(), in_.size(), pl, ps, ctx.head, ctx.headers, perr);
        if (st != http::ParseStatus::incomplete) break;
      }
      // Only a head that does not arrive whole waits here: listed for the connection limit.
      if (!HeadHook::is_linked()) worker_.mark_partial_head(*this);
      auto ec = co_await fill(in_, std::max(limits.max_header_bytes, limits.max_request_line) + 1);
      if (ec) break;
    }
    worker_.mark_head_read(*this);
    if (st == http::ParseStatus::incomplete) {
      // Client went away or was too slow; a partial head gets a 408 if the socket still works
      // (one closed to make room for a new client gets nothing: it would hold its place longer).
      if (timed_out_ && !in_.empty() && !closed_slow_) {
        timed_out_ = false;
        co_await refuse(408, "request_timeout", "the request head did not arrive in time");
      }
      break;
    }
    if (st == http::ParseStatus::error) {
      counters.bad_requests.inc();
      spdlog::debug("client {}: bad request: {}", remote_, http::to_string(perr));
      co_await refuse(http::status_for(perr), "bad_request", http::to_string(perr));
      break;
    }

    // ---- 3. the request's context ----
    ++requests_;
    if (requests_ == 1) {
      worker_.set_protocol(*this, transport_->is_tls() ? metrics::ConnProtocol::http1_tls : metrics::ConnProtocol::http1);
    }
    counters.requests.inc();
    ctx.snapshot = snapshot_.get();
    ctx.listener = snapshot_->find_listener(listener_);
    ctx.protocol = ctx.head.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    if (transport_->is_tls()) ctx.scheme = "https";
    ctx.tls = transport_->ssl();
    ctx.remote_addr = remote_;
    ctx.client_ip = std::string_view(remote_).substr(0, ip_len_);
    ctx.start = Clock::now();
    body_deadline_ = limits.body_deadline.count() == 0 ? Clock::time_point::max() : ctx.start + limits.body_deadline;
    http10_ = ctx.head.version_minor == 0;
    cursor_ = ctx.head.head_length;
    sent_continue_ = false;
    close_after_ = !ctx.head.keep_alive || worker_.draining();
    if (requests_ >= limits.max_requests_per_connection) {
      counters.max_requests_reached.inc();
      close_after_ = true;
    }
    int status = 0;
    std::string_view code, message;
    disarm();
    if (!ctx.listener) {
      break;  // the listener was removed by a reload
    } else if (!prepare_request(ctx, status, code, message)) {
      counters.bad_requests.inc();
      ctx.close_connection = true;
      co_await respond_error(ctx, *this, status, code, message);
    } else {
      co_await run_request(worker_, ctx, *this);
    }

    // ---- 4. after the response: keep the connection for the next request, or close ----
    bool reuse = !close_after_ && !ctx.close_connection && ctx.body_done && !until_close_out_ && !timed_out_;
    if (!reuse) {
      // Draining: the client may have sent its next request before it read our `Connection:
      // close`; closing with that request unread would reset the connection and can destroy the
      // answer it has not read yet.
      if (worker_.draining() && !timed_out_) co_await linger();
      break;
    }
    if (aux_.has_block()) {
      // The body spilled into aux_, so in_ is used up; pipelined bytes (if any) are in aux_.
      aux_.consume(aux_cursor_);
      aux_cursor_ = 0;
      in_.reset(&worker_.buffers());
      in_.swap(aux_);
    } else {
      in_.consume(cursor_);
    }
    cursor_ = 0;
  }
  // Lingering close after an error answer is done by refuse(); here the socket just closes.
  close();
  co_return false;
}

bool DownstreamConnection::h2_preface_pending() const {
  // Only a connection's first request, only on a cleartext listener with http2 enabled.
  if (requests_ != 0 || transport_->is_tls() || in_.empty()) return false;
  const ListenerRuntime* lr = snapshot_ ? snapshot_->find_listener(listener_) : nullptr;
  if (!lr || !lr->config->http2.enabled) return false;
  const std::string_view got = in_.view();
  return kH2Preface.starts_with(got.substr(0, std::min(got.size(), kH2Preface.size())));
}

bool DownstreamConnection::prepare_request(RequestContext& ctx, int& status, std::string_view& code,
                                           std::string_view& message) {
  const auto& limits = snapshot_->config->limits;
  if (ctx.head.unknown_expectation) {
    status = 417, code = "expectation_failed", message = "only 100-continue is supported";
    return false;
  }
  if (ctx.head.method == http::Method::connect) {
    status = 405, code = "method_not_allowed", message = "CONNECT is not supported";
    return false;
  }
  http::TargetParts parts;
  auto form = http::split_target(ctx.head.target, parts);
  if (form != http::TargetForm::origin && form != http::TargetForm::absolute) {
    status = 400, code = "bad_request", message = "unsupported request-target form";
    return false;
  }
  if (!http::normalize_path(parts.path, {limits.merge_slashes}, ctx.path)) {
    status = 400, code = "bad_request", message = "invalid request path";
    return false;
  }
  ctx.query = parts.query;
  ctx.has_query = parts.has_query;
  // RFC 9112 §3.2.2: an absolute-form target's authority replaces the Host field.
  if (form == http::TargetForm::absolute) {
    ctx.authority = parts.authority;
    if (!http::parse_authority(ctx.authority, ctx.host)) {
      status = 400, code = "bad_request", message = "invalid host";
      return false;
    }
  } else {
    // The parser already validated Host; routing needs only its host part, lower-cased.
    ctx.authority = ctx.head.host;
    std::string_view h = ctx.authority;
    size_t end = h.starts_with('[') ? h.find(']') + 1 : h.find(':');
    h = h.substr(0, end);
    ctx.host.resize(h.size());
    for (size_t i = 0; i < h.size(); ++i) ctx.host[i] = ascii_lower(h[i]);
  }
  // WebSocket: Connection: upgrade + Upgrade: websocket on a GET is passed on; any other upgrade
  // (h2c, TLS) is not ours to offer upstream and is dropped with the other hop-by-hop fields.
  if (ctx.head.upgrade && ctx.head.method == http::Method::get) {
    for (const auto& h : ctx.headers) {
      if (iequals(h.name, "upgrade") && iequals(trim_ows(h.value), "websocket")) ctx.upgrade = h.value;
    }
  }
  switch (ctx.head.framing) {
    case http::BodyFraming::content_length:
      if (limits.max_body_size != 0 && ctx.head.content_length > limits.max_body_size) {
        status = 413, code = "body_too_large", message = "request body exceeds the configured limit";
        ctx.body_done = false;
        return false;
      }
      ctx.body_remaining = ctx.head.content_length;
      ctx.body_done = ctx.body_remaining == 0;
      break;
    case http::BodyFraming::chunked:
      ctx.chunked.reset();
      ctx.body_done = false;
      break;
    default:
      ctx.body_done = true;
      break;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Request body
// ---------------------------------------------------------------------------------------------

void DownstreamConnection::take_body_from(RequestContext& ctx, IoBuffer& buffer, size_t& offset) {
  ctx.body_views.clear();
  if (ctx.body_done || offset >= buffer.size()) return;
  std::string_view avail(buffer.data() + offset, buffer.size() - offset);
  if (ctx.head.framing == http::BodyFraming::content_length) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(ctx.body_remaining, avail.size()));
    ctx.body_views.push_back(avail.substr(0, take));
    ctx.body_remaining -= take;
    ctx.request_body_bytes += take;
    offset += take;
    ctx.body_done = ctx.body_remaining == 0;
  } else {
    uint64_t before = ctx.chunked.body_bytes();
    offset += ctx.chunked.feed(avail, ctx.body_views);
    ctx.request_body_bytes += ctx.chunked.body_bytes() - before;
    ctx.body_done = ctx.chunked.done();
  }
}

void DownstreamConnection::preread_body(RequestContext& ctx) { take_body_from(ctx, in_, cursor_); }

boost::asio::awaitable<error_code> DownstreamConnection::read_body(RequestContext& ctx) {
  ctx.body_views.clear();
  if (ctx.body_done) co_return error_code{};
  if (ctx.head.expect_continue && !sent_continue_ && !ctx.response_started) {
    // The client waits for this before sending the body (RFC 9110 §10.1.1).
    sent_continue_ = true;
    arm(DownstreamWait::send, snapshot_->config->limits.send_timeout);
    auto ec = co_await transport_->write_all(kContinue);
    disarm();
    if (ec) co_return ec;
  }
  const auto& limits = snapshot_->config->limits;
  for (;;) {
    // Body bytes go after the head in in_ while there is room, else into aux_ (from its start:
    // the previous pieces were written before we were called again).
    IoBuffer* buffer = &in_;
    size_t* offset = &cursor_;
    if (aux_.has_block() || in_.tail_room() < 2048) {
      if (aux_.has_block()) aux_.consume(aux_cursor_);
      aux_cursor_ = 0;
      buffer = &aux_;
      offset = &aux_cursor_;
    }
    if (*offset >= buffer->size()) {
      // body_timeout bounds each gap; body_deadline the whole body, however steadily it trickles.
      arm(DownstreamWait::body, limits.body_timeout);
      deadline_ = std::min(deadline_, body_deadline_);
      auto ec = co_await fill(*buffer, BufferPool::kBlockSize);
      disarm();
      if (ec) co_return timed_out_ ? boost::asio::error::timed_out : ec;
    }
    take_body_from(ctx, *buffer, *offset);
    if (ctx.chunked.failed()) co_return boost::asio::error::invalid_argument;
    if (!ctx.body_views.empty() || ctx.body_done) co_return error_code{};
  }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

bool DownstreamConnection::start_head(RequestContext& ctx, const ResponseOut& head,
                                      std::span<const std::string_view> body, bool end, error_code& ec) {
  HeadBuffer& out = ctx.out_head;
  out.clear();
  out.put("HTTP/1.1 "sv);
  out.put_decimal(static_cast<uint64_t>(head.status));
  out.put(' ');
  out.put(head.reason.empty() ? http::reason_phrase(head.status) : head.reason);
  out.put("\r\n"sv);
  for_each_response_field(ctx, head, [&out](std::string_view name, std::string_view value) { out.put_field(name, value); });
  append_edits(out, ctx.response_edits);

  chunked_out_ = false;
  until_close_out_ = false;
  if (head.status == 101) {
    // Switching protocols: the connection becomes a tunnel after this head (see tunnel()).
    out.put_field("Upgrade", head.upgrade);
    out.put("Connection: upgrade\r\n\r\n"sv);
    ctx.response_started = true;
    close_after_ = true;
    return try_write_pieces(ctx, {}, false, ec);
  }
  if (head.no_body) {
    if (!head.keep_content_length_header && head.content_length && head.status != 204 && head.status != 304) {
      out.put("Content-Length: "sv);
      out.put_decimal(*head.content_length);
      out.put("\r\n"sv);
    }
  } else if (head.content_length) {
    out.put("Content-Length: "sv);
    out.put_decimal(*head.content_length);
    out.put("\r\n"sv);
  } else if (!http10_) {
    out.put("Transfer-Encoding: chunked\r\n"sv);
    chunked_out_ = true;
  } else {
    until_close_out_ = true;  // HTTP/1.0 client, unknown length: the close ends the body
  }
  // Unread request body: closing is cheaper and safer than reading it to find the next request.
  if (!ctx.body_done || worker_.draining() || until_close_out_) close_after_ = true;
  if (close_after_) {
    out.put("Connection: close\r\n"sv);
  } else if (http10_) {
    out.put("Connection: keep-alive\r\n"sv);
  }
  out.put("\r\n"sv);
  ctx.response_started = true;
  return try_write_pieces(ctx, head.no_body ? std::span<const std::string_view>() : body, end, ec);
}

boost::asio::awaitable<error_code> DownstreamConnection::send_body(RequestContext& ctx,
                                                                   std::span<const std::string_view> body, bool end) {
  ctx.out_head.clear();
  co_return co_await write_pieces(ctx, body, end);
}

boost::asio::awaitable<error_code> DownstreamConnection::send_trailers(RequestContext& ctx,
                                                                       std::span<const http::Header> trailers) {
  if (!chunked_out_) co_return co_await send_body(ctx, {}, true);  // no place for trailers: dropped
  // Last chunk, the trailer section, the blank line (RFC 9112 §7.1.2).
  HeadBuffer& out = ctx.out_head;
  out.clear();
  out.put("0\r\n"sv);
  for (const auto& t : trailers) {
    if (http::is_hop_by_hop(t.name) || iequals(t.name, "content-length")) continue;
    out.put_field(t.name, t.value);
  }
  out.put("\r\n"sv);
  chunked_out_ = false;  // the framing is written: write_pieces adds nothing
  co_return co_await write_pieces(ctx, {}, true);
}

// ---------------------------------------------------------------------------------------------
// Upgraded connections (WebSocket): a byte tunnel between the client and the upstream
// ---------------------------------------------------------------------------------------------

boost::asio::awaitable<error_code> DownstreamConnection::tunnel(RequestContext& ctx, Transport& upstream,
                                                                std::string_view upstream_early,
                                                                std::chrono::milliseconds idle_timeout) {
  using namespace boost::asio::experimental::awaitable_operators;
  tunnel_idle_ = idle_timeout;
  tunnel_failed_ = false;
  arm(DownstreamWait::tunnel, tunnel_idle_);
  // Bytes already here: what the client sent behind its request, what the upstream sent behind its 101.
  if (cursor_ < in_.size()) {
    auto ec = co_await upstream.write_all(std::string_view(in_.data() + cursor_, in_.size() - cursor_));
    cursor_ = in_.size();
    if (ec) co_return ec;
  }
  if (!upstream_early.empty()) {
    auto ec = co_await transport_->write_all(upstream_early);
    if (ec) co_return ec;
  }
  auto [a, b] = co_await (pump(*transport_, upstream) && pump(upstream, *transport_));
  disarm();
  close_after_ = true;
  ctx.close_connection = true;
  co_return a ? a : b;
}

boost::asio::awaitable<error_code> DownstreamConnection::pump(Transport& from, Transport& to) {
  auto buffer = std::make_unique<char[]>(BufferPool::kBlockSize);  // once per tunnel direction
  error_code ec;
  for (;;) {
    size_t n = from.read_some(buffer.get(), BufferPool::kBlockSize, ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
      ec = co_await from.wait_readable();
      if (ec || tunnel_failed_ || timed_out_) break;
      continue;
    }
    if (ec || tunnel_failed_ || timed_out_) break;
    arm(DownstreamWait::tunnel, tunnel_idle_);
    ec = co_await to.write_all(std::string_view(buffer.get(), n));
    if (ec || tunnel_failed_ || timed_out_) break;
  }
  if (ec == boost::asio::error::eof && !tunnel_failed_ && !timed_out_) {
    to.shutdown_send();  // this direction ended cleanly: pass the half-close on
    co_return error_code{};
  }
  // A failure (or the idle timeout): stop the other direction too.
  tunnel_failed_ = true;
  from.cancel();
  to.cancel();
  co_return timed_out_ ? boost::asio::error::timed_out : ec;
}

size_t DownstreamConnection::frame_batch(Iov& iov, size_t n, std::span<const std::string_view> body, size_t& next,
                                         bool end) {
  n = frame_pieces(iov, n, body, next, chunked_out_, chunk_header_);
  if (chunked_out_ && end && next >= body.size()) {
    iov[n++] = boost::asio::buffer(http::kLastChunk.data(), http::kLastChunk.size());
  }
  return n;
}

bool DownstreamConnection::try_write_pieces(RequestContext& ctx, std::span<const std::string_view> body, bool end,
                                            error_code& ec) {
  auto& iov = ctx.iov;
  size_t n = 0;
  if (!ctx.out_head.empty()) iov[n++] = boost::asio::buffer(ctx.out_head.data(), ctx.out_head.size());
  size_t next = 0;
  n = frame_batch(iov, n, body, next, end);
  // Straight into the socket: it takes everything in the usual case.
  std::span<boost::asio::const_buffer> bufs(iov.data(), n);
  size_t done = 0;
  ec = {};
  if (n > 0) {
    done = transport_->write_some(bufs, ec);
    if (ec) return true;
  }
  if (done == total_size(bufs) && next >= body.size()) return true;
  pending_body_ = body;
  pending_next_ = next;
  pending_iov_ = n;
  pending_done_ = done;
  pending_end_ = end;
  return false;
}

boost::asio::awaitable<error_code> DownstreamConnection::finish_send(RequestContext& ctx) {
  auto& iov = ctx.iov;
  const std::span<const std::string_view> body = pending_body_;
  const bool end = pending_end_;
  size_t next = pending_next_;
  size_t n = pending_iov_;
  size_t done = pending_done_;
  pending_body_ = {};
  for (;;) {
    std::span<boost::asio::const_buffer> bufs(iov.data(), n);
    if (done < total_size(bufs)) {
      arm(DownstreamWait::send, snapshot_->config->limits.send_timeout);
      auto ec = co_await transport_->write_all(consume_front(bufs, done));
      disarm();
      if (ec) co_return timed_out_ ? boost::asio::error::timed_out : ec;
    }
    if (next >= body.size()) co_return error_code{};
    // The next batch of pieces (more than one scatter list holds).
    n = frame_batch(iov, 0, body, next, end);
    error_code ec;
    done = n > 0 ? transport_->write_some(std::span<boost::asio::const_buffer>(iov.data(), n), ec) : 0;
    if (ec) co_return ec;
  }
}

boost::asio::awaitable<error_code> DownstreamConnection::write_pieces(RequestContext& ctx,
                                                                      std::span<const std::string_view> body, bool end) {
  error_code ec;
  if (try_write_pieces(ctx, body, end, ec)) co_return ec;
  co_return co_await finish_send(ctx);
}

boost::asio::awaitable<void> DownstreamConnection::refuse(int status, std::string_view code, std::string_view message) {
  const std::string body = error_json(code, message);
  std::string out = "HTTP/1.1 ";
  append_decimal(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(http::reason_phrase(status));
  out.append("\r\nContent-Type: application/json\r\nContent-Length: "sv);
  append_decimal(out, body.size());
  out.append("\r\nConnection: close\r\n\r\n"sv);
  out.append(body);
  arm(DownstreamWait::send, std::chrono::seconds(5));
  auto ec = co_await transport_->write_all(out);
  if (ec) co_return;
  co_await linger();
}

boost::asio::awaitable<void> DownstreamConnection::linger() {
  // Stop sending, then read and drop what the client still sends for a moment, so our last
  // answer is not destroyed by a reset for unread data (RFC 9112 §9.6).
  transport_->shutdown_send();
  in_.reset(&worker_.buffers());
  aux_.reset(&worker_.buffers());
  arm(DownstreamWait::send, kLingerTime);
  for (size_t drained = 0; drained < kLingerBytes;) {
    in_.consume(in_.size());
    auto rec = co_await fill(in_, BufferPool::kBlockSize);
    if (rec) break;
    drained += in_.size();
  }
  disarm();
}

void serve_client(DownstreamWorker& worker, tcp::socket socket, const std::string& listener, std::string client,
                  size_t client_ip_len) {
  const ListenerRuntime* lr = worker.snapshot()->find_listener(listener);
  if (!lr) return;  // removed by a reload that this accept raced with
  if (!lr->tls) {
    auto conn = std::make_unique<DownstreamConnection>(worker, std::make_unique<Transport>(std::move(socket)), listener,
                                                       std::move(client), client_ip_len);
    DownstreamConnection::park(std::move(conn));
    return;
  }
  SSL* ssl = lr->tls->new_session();
  if (!ssl) {
    worker.counters().tls_handshake_failures.inc();
    return;
  }
  auto conn = std::make_unique<DownstreamConnection>(worker, std::make_unique<Transport>(std::move(socket), ssl), listener,
                                                     std::move(client), client_ip_len);
  boost::asio::co_spawn(worker.io(), DownstreamConnection::start_tls(std::move(conn), lr->tls->config().handshake_timeout),
                        boost::asio::detached);
}

}  // namespace turnpike::proxy
