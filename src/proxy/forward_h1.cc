// One attempt to an HTTP/1.1 node: the request goes up, the response streams back.
//
//   acquire a connection to the node (parked, else new)
//   → write head + body (re-framed, streamed with backpressure)
//   → read the response head
//   → header filter → stream body (re-framed) → park or close the connection
//
// How it ended (a connect failure, a stale parked connection, a failed node) goes back to the
// pipeline, whose retry policy (forward.h) decides whether another attempt follows.
//
// Hot path: the request head is serialized into the pooled context's string; body bytes go from
// one connection's buffer to the other's socket without copies; one writev per direction for a
// small exchange. No allocation after warm-up, no lock, no exceptions.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <array>
#include <bit>

#include "turnpike/proxy/headers.h"
#include "turnpike/proxy/io.h"
#include "forward.h"
#include "turnpike/proxy/pipeline.h"
#include "turnpike/common/coarse_clock.h"
#include "turnpike/http/chunked.h"
#include "turnpike/proxy/snapshot.h"
#include "turnpike/proxy/worker.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;

namespace {

constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
using boost::system::error_code;
using upstream::ConnState;
using upstream::UpstreamConnection;

// Whether the response's Upgrade field names the protocol the client asked for.
bool upgrade_matches(const std::vector<http::Header>& headers, std::string_view asked) {
  for (const auto& h : headers) {
    if (iequals(h.name, "upgrade")) return iequals(trim_ows(h.value), trim_ows(asked));
  }
  return false;
}

// Serializes the upstream request head into ctx.out_head.
void write_request_head(RequestContext& ctx, const upstream::ResolvedNode& node) {
  HeadBuffer& out = ctx.out_head;
  out.clear();
  out.put(ctx.head.method_name);
  out.put(' ');
  out.put(ctx.upstream_path.empty() ? std::string_view(ctx.path) : ctx.upstream_path);
  if (ctx.has_query) {
    out.put('?');
    out.put(ctx.query);
  }
  out.put(" HTTP/1.1\r\n"sv);
  out.put_field("Host", upstream_authority(ctx, node));

  for_each_forwarded_field(ctx, [&out](std::string_view name, std::string_view value) { out.put_field(name, value); });

  // Re-framed: a known length stays a Content-Length; a chunked body is re-chunked by us.
  if (ctx.head.framing == http::BodyFraming::content_length) {
    out.put("Content-Length: "sv);
    out.put_decimal(ctx.head.content_length);
    out.put("\r\n"sv);
  } else if (ctx.head.framing == http::BodyFraming::chunked) {
    out.put("Transfer-Encoding: chunked\r\n"sv);
  }
  if (!ctx.upgrade.empty()) {
    out.put_field("Upgrade", ctx.upgrade);
    out.put("Connection: upgrade\r\n"sv);
  }
  out.put("\r\n"sv);
}

enum class SendResult : unsigned char {
  ok,               // request fully written
  upstream_failed,  // writing to the upstream failed (see conn->timed_out)
  client_failed,    // reading the body from the client failed
  too_large,        // body exceeded max_body_size
  not_finished,     // send_bodyless_request: a request with a body, left to send_request
  partial,          // send_bodyless_request: the socket took part of the head (maybe none)
};

// The usual request, a head with no body, written straight into the socket without a coroutine
// frame. `written` says how much of the head went out; on `partial` the caller writes the rest.
SendResult send_bodyless_request(RequestContext& ctx, UpstreamConnection& conn, size_t& written) {
  written = 0;
  if (ctx.head.framing != http::BodyFraming::none || !ctx.body_views.empty()) return SendResult::not_finished;
  conn.arm(ConnState::sending, coarse_now());
  ++conn.requests;
  const std::array bufs{boost::asio::const_buffer(ctx.out_head.data(), ctx.out_head.size())};
  error_code ec;
  written = conn.io.write_some(bufs, ec);  // a full socket is 0 bytes, not an error
  if (ec) return SendResult::upstream_failed;
  return written == ctx.out_head.size() ? SendResult::ok : SendResult::partial;
}

// Writes the head and the whole body to the upstream. `body_touched` is set once any body
// bytes beyond those that came with the head have been read from the client (no retry then).
boost::asio::awaitable<SendResult> send_request(RequestContext& ctx, Downstream& downstream, UpstreamConnection& conn,
                                                bool& body_touched, error_code& client_ec) {
  const bool chunked = ctx.head.framing == http::BodyFraming::chunked;
  const uint64_t max_body = ctx.snapshot->config->limits.max_body_size;
  Iov& iov = ctx.iov;
  char chunk_header[24];
  size_t n = 0;
  iov[n++] = boost::asio::buffer(ctx.out_head.data(), ctx.out_head.size());
  conn.arm(ConnState::sending, coarse_now());
  ++conn.requests;

  // ctx.body_views holds the body bytes already received (start_request_body): they go out in
  // the same write as the head.
  for (;;) {
    size_t first = 0;
    do {
      n = frame_pieces(iov, n, ctx.body_views, first, chunked, chunk_header);
      bool last_batch = first >= ctx.body_views.size();
      if (last_batch && ctx.body_done && chunked) {
        iov[n++] = boost::asio::buffer(http::kLastChunk.data(), http::kLastChunk.size());
      }
      if (n > 0) {
        // Straight into the socket (the usual case: it takes everything); a coroutine only for
        // what it did not take.
        std::span<boost::asio::const_buffer> bufs(iov.data(), n);
        error_code wec;
        const size_t total = total_size(bufs);
        const size_t done = conn.io.write_some(bufs, wec);
        if (!wec && done < total) wec = co_await conn.io.write_all(consume_front(bufs, done));
        if (wec) co_return SendResult::upstream_failed;
        conn.arm(ConnState::sending, coarse_now());
      }
      n = 0;
    } while (first < ctx.body_views.size());
    if (max_body != 0 && ctx.request_body_bytes > max_body) co_return SendResult::too_large;
    if (ctx.body_done) break;
    body_touched = true;
    client_ec = co_await downstream.read_body(ctx);
    if (client_ec) co_return SendResult::client_failed;
    if (ctx.body_done && ctx.body_views.empty() && chunked) {
      iov[0] = boost::asio::buffer(http::kLastChunk.data(), http::kLastChunk.size());
      const error_code wec = co_await conn.io.write_all(std::span<boost::asio::const_buffer>(iov.data(), 1));
      if (wec) co_return SendResult::upstream_failed;
      break;
    }
  }
  co_return SendResult::ok;
}

// The pipeline holds `conn`: a client giving up cancels its waits (RequestContext::abort_upstream).
void hold_upstream(RequestContext& ctx, UpstreamConnection* conn) {
  ctx.hold_upstream([](void* io) { static_cast<tls::Transport*>(io)->cancel(); }, &conn->io);
}

// Gives `conn` back to the pool (parked when `reusable` and the client did not abort mid-way,
// closed otherwise); the client side no longer sees it.
void release_upstream(RequestContext& ctx, upstream::UpstreamPool& pool, UpstreamConnection* conn, bool reusable) {
  ctx.drop_upstream();
  pool.release(conn, reusable && !ctx.client_aborted);
}

// Reads into the connection's buffer what the socket holds; would_block when it holds nothing
// (the caller waits for readability and calls again). A plain function, not a coroutine: the
// wait is co_awaited by the caller, so the per-request path does not pay a coroutine frame for it.
error_code read_available(UpstreamConnection& conn, size_t limit) {
  if (!conn.buffer.make_room(conn.pool->buffers(), limit)) return boost::asio::error::message_size;
  error_code ec;
  size_t got = conn.io.read_some(conn.buffer.tail(), conn.buffer.tail_room(), ec);
  if (ec == boost::asio::error::try_again) ec = boost::asio::error::would_block;
  if (!ec) conn.buffer.commit(got);
  return ec;
}

// Reads what the socket holds, waiting for readability only when it holds nothing. Used for the
// body, after the read that brought the head. It reads before it waits: that read may have come
// back short with the upstream's close queued behind its bytes (one readiness edge for both, when
// the upstream writes and closes at once), and no later edge would wake the wait for it — a
// close-delimited body would then end in a read timeout instead of at the close. The price is
// one read that finds nothing when the body comes in several pieces.
boost::asio::awaitable<error_code> read_more(UpstreamConnection& conn, size_t limit) {
  for (;;) {
    error_code ec = read_available(conn, limit);
    if (ec != boost::asio::error::would_block) co_return ec;
    auto [wec] = co_await conn.io.async_wait_readable(nothrow);
    if (wec) co_return wec;
  }
}


}  // namespace

boost::asio::awaitable<Attempt> attempt_http1(Worker& worker, RequestContext& ctx, Downstream& downstream,
                                             upstream::UpstreamPool& pool, size_t node, const AttemptOptions& opt) {
  // The steps run in this one coroutine: a coroutine per step would cost every request a frame
  // allocation and two resumptions each.
  http::ResponseHead rh;
  auto& counters = worker.counters();
  const bool idempotent = http::is_idempotent(ctx.head.method);
  http::ParserLimits response_limits;
  response_limits.max_header_bytes = std::max<size_t>(65536, ctx.snapshot->config->limits.max_header_bytes);
  response_limits.max_headers = std::max<size_t>(200, ctx.snapshot->config->limits.max_headers);
  response_limits.max_request_line = 8192;
  const auto& rn = pool.upstream().nodes[node];
  bool body_touched = false;

  // ---- 1. connect, send, read the response head ----
  // A parked connection is taken without a coroutine; connecting needs one. A request that is not
  // sent again after a stale reused connection (not idempotent, or its body already read) has
  // the parked connection checked first.
  const bool verify = !idempotent || opt.body_read;
  upstream::UpstreamPool::Acquired acquired;
  if (!opt.fresh_connection) acquired = pool.take_idle(node, verify);
  if (!acquired.conn) {
    const auto connect_start = Clock::now();
    acquired = co_await pool.connect(node);
    ctx.upstream_connect_time = Clock::now() - connect_start;
  }
  if (acquired.ec) {
    // (The pool has warned about the node: UpstreamPool::report_failure.)
    counters.upstream_connect_failures.inc();
    if (acquired.tls_failed) counters.upstream_tls_failures.inc();
    ctx.upstream_tries.end(acquired.timed_out ? 504 : 502);
    co_return Attempt{AttemptEnd::connect_failed,
                      acquired.timed_out ? Outcome::upstream_connect_timeout : Outcome::upstream_connect_failed};
  }
  UpstreamConnection* conn = acquired.conn;
  hold_upstream(ctx, conn);
  if (ctx.client_aborted) {  // the client left while we connected: nothing was sent on it
    release_upstream(ctx, pool, conn, false);
    co_return Attempt{};
  }
  write_request_head(ctx, rn);
  error_code client_ec;
  size_t written = 0;
  SendResult sent = send_bodyless_request(ctx, *conn, written);
  if (sent == SendResult::partial) {
    std::array rest{boost::asio::const_buffer(ctx.out_head.data() + written, ctx.out_head.size() - written)};
    const error_code wec = co_await conn->io.write_all(std::span<boost::asio::const_buffer>(rest));
    sent = wec ? SendResult::upstream_failed : SendResult::ok;
  } else if (sent == SendResult::not_finished) {
    sent = co_await send_request(ctx, downstream, *conn, body_touched, client_ec);
  }
  if (sent == SendResult::client_failed || sent == SendResult::too_large) {
    release_upstream(ctx, pool, conn, false);
    if (sent == SendResult::too_large) {
      co_await respond_error(ctx, downstream, Outcome::body_too_large);
      ctx.close_connection = true;
    } else {
      co_await fail_client_body(ctx, downstream, client_ec);
    }
    co_return Attempt{};
  }
  error_code ec;
  bool stale = false;
  if (sent == SendResult::upstream_failed) {
    ec = boost::asio::error::broken_pipe;
    stale = conn->reused && !conn->timed_out;
  } else {
    // Read until a final (non-1xx) response head is complete.
    conn->arm(ConnState::receiving, coarse_now());
    conn->buffer.ensure(pool.buffers());
    downstream.upstream_wait_begin(ctx);
    http::ParseState ps;
    http::ParseError perr = http::ParseError::none;
    bool got_bytes = false;
    for (;;) {
      if (!conn->buffer.empty()) {
        auto st = http::parse_response_head(conn->buffer.data(), conn->buffer.size(), response_limits, ps,
                                            ctx.head.method, rh, ctx.response_headers, perr);
        if (st == http::ParseStatus::error) {
          ec = boost::asio::error::invalid_argument;
          break;
        }
        if (st == http::ParseStatus::complete) {
          if (rh.status >= 100 && rh.status < 200 && rh.status != 101) {
            conn->buffer.consume(rh.head_length);  // interim response: not forwarded
            ps = {};
            continue;
          }
          break;
        }
      }
      if (!conn->io.read_buffered()) {
        auto [wec] = co_await conn->io.async_wait_readable(nothrow);
        if (wec) {
          ec = wec;
          break;
        }
      }
      ec = read_available(*conn, response_limits.max_header_bytes + 1);
      if (ec == boost::asio::error::would_block) continue;
      if (ec) break;
      got_bytes = true;
      conn->arm(ConnState::receiving, coarse_now());
    }
    downstream.upstream_wait_end();
    if (ec && !got_bytes && conn->reused && !conn->timed_out && ec != boost::asio::error::invalid_argument) {
      stale = true;  // a parked connection the upstream had closed
    }
    // 101 only answers an upgrade we asked for (and then names the protocol we asked for).
    if (!ec && rh.status == 101 && (ctx.upgrade.empty() || !upgrade_matches(ctx.response_headers, ctx.upgrade))) {
      ec = boost::asio::error::invalid_argument;
    }
  }
  if (ec) {
    const bool timed_out = conn->timed_out;
    release_upstream(ctx, pool, conn, false);
    const bool bad_response = ec == boost::asio::error::invalid_argument || ec == boost::asio::error::message_size;
    ctx.upstream_tries.end(timed_out ? 504 : 502);
    if (stale) {
      spdlog::debug("upstream {}: {}: a reused connection was closed unanswered", pool.config().name, rn.address);
      co_return Attempt{AttemptEnd::stale, Outcome::upstream_failed, body_touched};
    }
    if (!ctx.client_aborted) {  // (then it is the cancel that failed the read, not the node)
      pool.report_failure(node, timed_out ? upstream::NodeFailure::timeout
                                          : (bad_response ? upstream::NodeFailure::bad_response
                                                          : upstream::NodeFailure::closed),
                          timed_out || bad_response ? error_code{} : ec);
    }
    const Outcome outcome = timed_out      ? Outcome::upstream_timeout
                            : bad_response ? Outcome::upstream_bad_response
                                           : Outcome::upstream_failed;
    co_return Attempt{AttemptEnd::failed, outcome, body_touched};
  }
  if (opt.policy && rh.status >= 400 && opt.policy->retries_status(node, rh.status)) {
    // retry_on_statuses: this answer is dropped with its connection (its body is not worth
    // reading) and another node asked.
    ctx.upstream_tries.end(rh.status);
    release_upstream(ctx, pool, conn, false);
    ctx.response_headers.clear();
    co_return Attempt{AttemptEnd::retry_status, Outcome::upstream_failed, body_touched};
  }
  ctx.upstream_time = Clock::now() - opt.started;

  // ==== Steps 2 and 3: header filter, response head to the client, then the body streamed from
  // the upstream connection's buffer to the client; finally the connection is parked or closed. ====
  {
    // ---- 2. response head: header filter, then to the client with the first body bytes ----
    ctx.upstream_status = rh.status;
    ctx.upstream_tries.end(rh.status);
    ctx.response_status = rh.status;
    size_t i = 0;
    if (!ctx.filters.empty()) {
      FilterStatus st = run_phase_hooks(ctx, Phase::header_filter, i);
      if (st == FilterStatus::suspend) st = co_await finish_phase(ctx, Phase::header_filter, i);
      if (st == FilterStatus::respond) {
        // A header filter answers instead of the upstream: its response goes to the client and
        // the upstream's, unread, goes with its connection.
        release_upstream(ctx, pool, conn, false);
        co_await send_local_response(ctx, downstream, false);
        co_return Attempt{};
      }
    }
    conn->buffer.consume(rh.head_length);

    if (rh.status == 101) {
      // Upgraded (WebSocket): the 101 goes to the client, then both connections become one tunnel.
      // The upstream connection is never reused afterwards.
      ResponseOut up;
      up.status = 101;
      up.headers = &ctx.response_headers;
      up.no_body = true;
      up.upgrade = ctx.upgrade;
      counters.tunnels.inc();
      auto ec = co_await downstream.send_head(ctx, up, {}, false);
      if (!ec) {
        conn->arm(ConnState::tunnel, Clock::time_point::max());
        ec = co_await downstream.tunnel(ctx, conn->io, conn->buffer.view(),
                                        std::chrono::duration_cast<std::chrono::milliseconds>(pool.config().read_timeout));
      }
      if (ec && ec != boost::asio::error::eof) ctx.error = ec == boost::asio::error::timed_out ? "tunnel_timeout" : "tunnel_failed";
      ctx.close_connection = true;
      release_upstream(ctx, pool, conn, false);
      co_return Attempt{};
    }

    ResponseOut out;
    // A header filter may have changed the status; the upstream's reason phrase then no longer fits.
    out.status = ctx.response_status;
    if (ctx.response_status == rh.status) out.reason = rh.reason;
    out.headers = &ctx.response_headers;
    out.no_body = rh.framing == http::BodyFraming::none;
    out.keep_content_length_header = out.no_body;
    if (rh.framing == http::BodyFraming::content_length) out.content_length = rh.content_length;

    const bool has_body_filters = !ctx.filters.empty();
    if (has_body_filters && !out.no_body && body_changes(ctx)) out.content_length.reset();  // streamed
    uint64_t remaining = rh.framing == http::BodyFraming::content_length ? rh.content_length : 0;
    bool done = out.no_body || (rh.framing == http::BodyFraming::content_length && remaining == 0);
    bool reusable = rh.keep_alive && rh.framing != http::BodyFraming::until_close;
    // The response body's own decoder: ctx.chunked is the request body's.
    http::ChunkedDecoder& chunks = conn->response_chunks;
    chunks.reset();
    bool first = true;
    error_code dec;

    // ---- 3. stream the body: upstream buffer → client, one read and one write at a time ----
    for (;;) {
      ctx.body_views.clear();
      if (!done && !conn->buffer.empty()) {
        if (rh.framing == http::BodyFraming::content_length) {
          size_t take = static_cast<size_t>(std::min<uint64_t>(remaining, conn->buffer.size()));
          ctx.body_views.push_back({conn->buffer.data(), take});
          remaining -= take;
          done = remaining == 0;
        } else if (rh.framing == http::BodyFraming::chunked) {
          size_t used = chunks.feed(conn->buffer.view(), ctx.body_views);
          if (chunks.failed()) {
            counters.upstream_bad_responses.inc();
            pool.report_failure(conn->node, upstream::NodeFailure::bad_response);
            ctx.error = "upstream_bad_chunking";
            if (first) {
              release_upstream(ctx, pool, conn, false);
              co_await respond_error(ctx, downstream, Outcome::upstream_bad_response);
              co_return Attempt{};
            }
            reusable = false;
            ctx.close_connection = true;
            break;
          }
          // Bytes the decoder did not take (after the last chunk) are not ours to forward.
          if (chunks.done()) {
            done = true;
            if (used != conn->buffer.size()) reusable = false;
          }
        } else {
          ctx.body_views.push_back(conn->buffer.view());
        }
      }
      uint64_t piece_bytes = 0;  // taken from the upstream connection's buffer
      for (auto v : ctx.body_views) piece_bytes += v.size();
      uint64_t sent_bytes = piece_bytes;
      if (has_body_filters && !out.no_body) {
        const size_t waiting = run_body_filters(ctx, ctx.body_views, done);
        if (waiting != kBodyFiltersDone) co_await finish_body_filters(ctx, ctx.body_views, done, waiting);
        sent_bytes = 0;
        for (auto v : ctx.body_views) sent_bytes += v.size();
      }
      if (first) {
        if (!downstream.start_head(ctx, out, ctx.body_views, done, dec)) dec = co_await downstream.finish_send(ctx);
        first = false;
      } else if (!ctx.body_views.empty() || done) {
        dec = co_await downstream.send_body(ctx, ctx.body_views, done);
      }
      if (dec) {
        ctx.close_connection = true;
        reusable = false;
        break;
      }
      ctx.response_body_bytes += sent_bytes;
      if (rh.framing == http::BodyFraming::content_length || rh.framing == http::BodyFraming::until_close) {
        conn->buffer.consume(std::min<size_t>(conn->buffer.size(), piece_bytes));
      } else {
        conn->buffer.consume(conn->buffer.size());
      }
      if (done) break;
      conn->arm(ConnState::receiving, coarse_now());
      auto ec = co_await read_more(*conn, BufferPool::kBlockSize);
      if (ec) {
        if (rh.framing == http::BodyFraming::until_close && ec == boost::asio::error::eof) {
          done = true;
          reusable = false;
          ctx.body_views.clear();
          // The close is the body's end: body filters get their last call (a compressor's trailer).
          if (has_body_filters && !out.no_body) {
            const size_t waiting = run_body_filters(ctx, ctx.body_views, true);
            if (waiting != kBodyFiltersDone) co_await finish_body_filters(ctx, ctx.body_views, true, waiting);
          }
          dec = co_await downstream.send_body(ctx, ctx.body_views, true);
          if (dec) ctx.close_connection = true;
          if (!dec) for (auto v : ctx.body_views) ctx.response_body_bytes += v.size();
          break;
        }
        // Truncated body: the client must see a broken response, not a short one.
        if (conn->timed_out) counters.upstream_timeouts.inc();
        if (!ctx.client_aborted) {
          pool.report_failure(conn->node, conn->timed_out ? upstream::NodeFailure::timeout : upstream::NodeFailure::closed,
                              conn->timed_out ? error_code{} : ec);
        }
        ctx.error = conn->timed_out ? "upstream_timeout" : "upstream_truncated";
        ctx.close_connection = true;
        reusable = false;
        break;
      }
    }
    release_upstream(ctx, pool, conn, reusable && done);
  }
  co_return Attempt{};
}

}  // namespace turnpike::proxy
