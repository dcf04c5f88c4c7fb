// One attempt to an HTTP/2 node (h2c, or h2 over TLS): the request goes up, the response
// streams back. The same steps as forward_h1.cc, on a stream of a shared connection instead of a
// connection of our own:
//
//   open a stream to the node (a connection with room, else a new one)
//   → submit the head, feed the body through the stream's data provider
//   → wait for the response head (a refused or lost stream goes back to the retry policy)
//   → header filter → stream the body, reopening the upstream's window only as the client takes
//   it (backpressure) → trailers → finish the stream
//
// The request body goes up inline (read from the client only when the upstream took the last
// pieces, between waits for the response) except for gRPC over an HTTP/2 client whose body is
// still open once the head is submitted: there a second coroutine, the body pump, reads the
// client and feeds the stream while this one waits for and relays the response (bidi
// streaming, where the client sends its next message only after it saw the last answer).
//
// Hot path: the nghttp2 header list is built in the pooled stream's own vectors; body bytes are
// copied once each way (into nghttp2's frame, out of the stream's buffer to the client). No lock.
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <charconv>
#include <exception>

#include "grpc.h"
#include "turnpike/proxy/wake_event.h"
#include "turnpike/proxy/headers.h"
#include "forward.h"
#include "turnpike/proxy/pipeline.h"
#include "turnpike/proxy/snapshot.h"
#include "turnpike/upstream/h2.h"
#include "turnpike/proxy/worker.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;

namespace {

using upstream::H2UpstreamFailure;
using upstream::H2UpstreamPool;
using upstream::H2UpstreamStream;

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  // NO_COPY is not used: nghttp2 copies the list on submit, so our views need not outlive it.
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

bool has_upper(std::string_view s) {
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') return true;
  }
  return false;
}

// Appends to a buffer whose capacity was reserved up front, so earlier views into it stay valid.
std::string_view stash(std::string& bytes, std::string_view s, bool lower) {
  size_t at = bytes.size();
  for (char c : s) bytes.push_back(lower && c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
  return std::string_view(bytes).substr(at, s.size());
}

// RFC 9113 §8.3.1: pseudo-headers first, field names in lower case, no connection-specific
// fields (for_each_forwarded_field drops them). The views point into ctx and s->nv_bytes.
void build_h2_request(RequestContext& ctx, H2UpstreamStream& s, const upstream::ResolvedNode& node, bool tls,
                      bool grpc) {
  const std::string_view request_path = ctx.upstream_path.empty() ? std::string_view(ctx.path) : ctx.upstream_path;
  size_t room = request_path.size() + ctx.query.size() + 64;
  for (const auto& h : ctx.headers) room += h.name.size();
  for (const auto& e : ctx.request_edits) room += e.name.size();
  s.nv_bytes.clear();
  s.nv_bytes.reserve(room);
  s.nva.clear();

  s.nva.push_back(make_nv(":method"sv, ctx.head.method_name));
  s.nva.push_back(make_nv(":scheme"sv, tls ? "https"sv : "http"sv));
  s.nva.push_back(make_nv(":authority"sv, upstream_authority(ctx, node)));
  std::string_view path = request_path;
  if (ctx.has_query) {
    size_t at = s.nv_bytes.size();
    s.nv_bytes.append(request_path).append("?"sv).append(ctx.query);
    path = std::string_view(s.nv_bytes).substr(at);
  }
  s.nva.push_back(make_nv(":path"sv, path));

  bool te_trailers = grpc;
  for (const auto& h : ctx.headers) {
    if (iequals(h.name, "te") && h.value.find("trailers") != std::string_view::npos) te_trailers = true;
  }
  for_each_forwarded_field(ctx, [&s](std::string_view name, std::string_view value) {
    s.nva.push_back(make_nv(has_upper(name) ? stash(s.nv_bytes, name, true) : name, value));
  });
  // TE is hop-by-hop, but "trailers" is the one value HTTP/2 allows (§8.2.2), and gRPC servers
  // require it.
  if (te_trailers) s.nva.push_back(make_nv("te"sv, "trailers"sv));
  if (ctx.head.framing == http::BodyFraming::content_length) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, ctx.head.content_length);
    s.nva.push_back(make_nv("content-length"sv, stash(s.nv_bytes, std::string_view(digits, end - digits), false)));
  }
}

// How a failed stream is named in the node's warning (UpstreamPool::report_failure).
upstream::NodeFailure node_failure(H2UpstreamFailure f, bool timed_out) {
  if (timed_out || f == H2UpstreamFailure::timed_out) return upstream::NodeFailure::timeout;
  return f == H2UpstreamFailure::reset ? upstream::NodeFailure::reset : upstream::NodeFailure::closed;
}

enum class Exchange : unsigned char {
  head,           // the response head arrived (the body may still be sending)
  upstream,       // the stream failed: see s->failure
  client_failed,  // reading the body from the client failed
  too_large,      // body exceeded max_body_size
};

// Gives the provider the next body pieces from the client once it has taken the current ones.
// Returns false on a client failure (client_ec set) or a too large body (client_ec empty).
boost::asio::awaitable<bool> feed_body(RequestContext& ctx, Downstream& downstream, H2UpstreamPool& h2,
                                       H2UpstreamStream& s, bool& body_touched, boost::system::error_code& client_ec) {
  const uint64_t max_body = ctx.snapshot->config->limits.max_body_size;
  s.deadline = s.hard_deadline;  // the client's pace is not the upstream's fault
  body_touched = true;
  client_ec = co_await downstream.read_body(ctx);
  if (client_ec) co_return false;
  if (max_body != 0 && ctx.request_body_bytes > max_body) co_return false;
  s.set_body(ctx.body_views, ctx.body_done);
  h2.resume_body(&s);
  co_return true;
}

// The concurrent request body pump (see the top of the file). Lives in attempt_h2's frame;
// attempt_h2 does not return before the pump has finished (stop_pump).
struct BodyPump {
  bool running = false;  // the pump coroutine has been spawned and has not ended
  bool stop = false;     // asked to end (the response is over or failed)
  bool touched = false;  // it read body bytes from the client (no retry after that)
  bool failed = false;   // the client's body failed (client_ec) or was too large (client_ec empty)
  boost::system::error_code client_ec;
  WakeEvent done;          // signalled when the coroutine has ended
};

// Reads the client's body and hands it to the stream's data provider, one batch at a time: the
// next read only once the provider took the last pieces (backpressure). While it runs it owns
// s.deadline: send_timeout while pieces wait for the upstream's window, none (the gRPC deadline
// only) while the client is silent — in a bidi call the upstream may wait for the client.
boost::asio::awaitable<void> pump_body(RequestContext& ctx, Downstream& downstream, H2UpstreamPool& h2,
                                       H2UpstreamStream& s, BodyPump& p) {
  const auto& ucfg = h2.owner().config();
  const uint64_t max_body = ctx.snapshot->config->limits.max_body_size;
  for (;;) {
    while (!p.stop && s.failure == H2UpstreamFailure::none && !s.body_taken()) {
      s.arm(ucfg.send_timeout, Clock::now());
      co_await s.wait_body();
    }
    if (p.stop || s.failure != H2UpstreamFailure::none || s.body_end) break;
    s.deadline = s.hard_deadline;  // the client's pace is not the upstream's fault
    p.touched = true;
    auto ec = co_await downstream.read_body(ctx);
    if (p.stop) break;
    if (ec || (max_body != 0 && ctx.request_body_bytes > max_body)) {
      p.client_ec = ec;
      p.failed = true;
      break;
    }
    if (s.failure != H2UpstreamFailure::none) break;
    s.set_body(ctx.body_views, ctx.body_done);
    h2.resume_body(&s);
  }
  // (start_pump's completion handler reports the end.)
}

void start_pump(Worker& worker, RequestContext& ctx, Downstream& downstream, H2UpstreamPool& h2,
                H2UpstreamStream& s, BodyPump& p) {
  p.running = true;
  p.stop = false;
  p.failed = false;
  p.client_ec = {};
  boost::asio::io_context& io = worker.io();
  // The pump has ended only once this handler ran: it is the last to touch `p` and `s`, so
  // attempt_h2 (which waits for `running` to clear) never frees them under it.
  boost::asio::co_spawn(io, pump_body(ctx, downstream, h2, s, p), [&p, &s, &io](std::exception_ptr e) {
    if (e) {
      spdlog::error("request body pump failed with an exception");
      p.failed = true;
      p.client_ec = boost::asio::error::fault;
    }
    p.running = false;
    s.notify();  // the main coroutine arms the stream's deadline itself now (or sees the failure)
    p.done.signal(io);
  });
}

// Ends the pump (at once if it waits for the client or the upstream) and waits until it has.
boost::asio::awaitable<void> stop_pump(Downstream& downstream, H2UpstreamStream& s, BodyPump& p) {
  p.stop = true;
  if (!p.running) co_return;
  downstream.cancel_body_read();
  s.notify_body();
  while (p.running) co_await p.done.wait();
}

// The stream's deadline for a wait of the main coroutine, unless the pump owns it.
void arm_main(H2UpstreamStream& s, const BodyPump& p, Clock::duration d) {
  if (!p.running) s.arm(d, Clock::now());
}

// Sends the request on `s` and waits for the final response head, the body going up through the
// pump (which reports a client failure by waking the stream).
boost::asio::awaitable<Exchange> exchange_pumped(H2UpstreamPool& h2, H2UpstreamStream& s, const BodyPump& p) {
  const auto& ucfg = h2.owner().config();
  for (;;) {
    if (s.failure != H2UpstreamFailure::none) co_return Exchange::upstream;
    if (s.headers_done) co_return Exchange::head;
    if (p.failed) co_return p.client_ec ? Exchange::client_failed : Exchange::too_large;
    arm_main(s, p, ucfg.read_timeout);
    co_await s.wait();
  }
}

// Sends the request on `s` and waits for the final response head.
boost::asio::awaitable<Exchange> exchange(RequestContext& ctx, Downstream& downstream, H2UpstreamPool& h2,
                                          H2UpstreamStream& s, bool& body_touched,
                                          boost::system::error_code& client_ec) {
  const auto& ucfg = h2.owner().config();
  const uint64_t max_body = ctx.snapshot->config->limits.max_body_size;
  if (max_body != 0 && ctx.request_body_bytes > max_body) co_return Exchange::too_large;
  for (;;) {
    if (s.failure != H2UpstreamFailure::none) co_return Exchange::upstream;
    if (s.headers_done) co_return Exchange::head;
    if (!s.body_end && s.body_taken()) {
      bool fed = co_await feed_body(ctx, downstream, h2, s, body_touched, client_ec);
      if (!fed) co_return client_ec ? Exchange::client_failed : Exchange::too_large;
      continue;
    }
    s.arm(s.body_end && s.body_taken() ? ucfg.read_timeout : ucfg.send_timeout, Clock::now());
    co_await s.wait();
  }
}

// Step 1: a stream to `node` whose final response head has arrived, or how the attempt failed
// (the stream finished, a pump stopped; an error the client's side caused has been answered).
struct Obtained {
  H2UpstreamStream* stream = nullptr;
  Attempt failure;  // when stream is null
};

boost::asio::awaitable<Obtained> obtain_h2_response(Worker& worker, RequestContext& ctx, Downstream& downstream,
                                                    upstream::UpstreamPool& pool, size_t node,
                                                    const AttemptOptions& opt, Clock::time_point hard_deadline,
                                                    bool grpc, BodyPump& pump) {
  H2UpstreamPool& h2 = *pool.h2();
  auto& counters = worker.counters();
  const bool tls = pool.config().protocol == config::UpstreamProtocol::h2;
  const bool has_body = ctx.head.framing != http::BodyFraming::none;
  bool body_touched = false;
  const auto& rn = pool.upstream().nodes[node];

  const auto open_start = Clock::now();
  H2UpstreamStream* s = co_await h2.open_stream(node, hard_deadline);
  // The first stream of a new connection waited for it to open: its connect time (metrics, log).
  if (!s->reused_connection) ctx.upstream_connect_time = Clock::now() - open_start;
  if (s->failure == H2UpstreamFailure::connect_failed) {
    // (The connection has warned about the node: UpstreamPool::report_failure.)
    const bool timed_out = s->timed_out;
    ctx.upstream_tries.end(timed_out ? 504 : 502);
    h2.finish(s);
    counters.upstream_connect_failures.inc();
    co_return Obtained{nullptr, {AttemptEnd::connect_failed,
                                 timed_out ? Outcome::upstream_connect_timeout : Outcome::upstream_connect_failed}};
  }
  if (ctx.client_aborted) {  // the client left while the stream was being set up
    h2.finish(s);
    co_return Obtained{};
  }
  // A client giving up from now on resets the upstream stream (RequestContext::abort_upstream).
  ctx.hold_upstream([](void* stream) { static_cast<H2UpstreamStream*>(stream)->abort(); }, s);
  build_h2_request(ctx, *s, rn, tls, grpc);
  s->set_body(ctx.body_views, !has_body || ctx.body_done);
  Exchange ex = Exchange::upstream;
  boost::system::error_code client_ec;
  // gRPC only: its retries are decided before any body byte was read either way, and only
  // its streams need the body and the response to flow at once.
  const bool pumped = grpc && has_body && !ctx.body_done && downstream.can_pump_body_concurrently();
  downstream.upstream_wait_begin(ctx);
  if (h2.submit(s, has_body)) {
    if (pumped) {
      start_pump(worker, ctx, downstream, h2, *s, pump);
      ex = co_await exchange_pumped(h2, *s, pump);
    } else {
      ex = co_await exchange(ctx, downstream, h2, *s, body_touched, client_ec);
    }
  }
  downstream.upstream_wait_end();
  if (ex == Exchange::head) {
    ctx.upstream_tries.end(s->status);
    if (!pumped && opt.policy && opt.policy->retries_status(node, s->status)) {
      // retry_on_statuses: this answer is dropped (finish resets the stream) and another node asked.
      ctx.drop_upstream();
      h2.finish(s);
      ctx.response_headers.clear();
      co_return Obtained{nullptr, {AttemptEnd::retry_status, Outcome::upstream_failed, body_touched}};
    }
    ctx.upstream_time = Clock::now() - opt.started;
    co_return Obtained{s, {}};
  }
  if (pumped) {
    co_await stop_pump(downstream, *s, pump);
    body_touched = body_touched || pump.touched;
    client_ec = pump.client_ec;
    if (pump.failed && ex == Exchange::upstream) ex = client_ec ? Exchange::client_failed : Exchange::too_large;
  }

  const H2UpstreamFailure failure = s->failure;
  const bool reused = s->reused_connection;
  const bool timed_out = s->timed_out || failure == H2UpstreamFailure::timed_out;
  ctx.drop_upstream();
  h2.finish(s);
  if (ex == Exchange::too_large) {
    co_await respond_error(ctx, downstream, Outcome::body_too_large);
    ctx.close_connection = true;
    co_return Obtained{};
  }
  if (ex == Exchange::client_failed) {
    co_await fail_client_body(ctx, downstream, client_ec);
    co_return Obtained{};
  }
  if (failure != H2UpstreamFailure::none) ctx.upstream_tries.end(timed_out ? 504 : 502);
  // RFC 9113 §8.7: a refused stream was not processed, so it may go again on another connection
  // whatever its method; a stream lost with its (reused) connection like a stale keepalive
  // connection in HTTP/1.1.
  if (failure == H2UpstreamFailure::refused) {
    co_return Obtained{nullptr, {AttemptEnd::refused, Outcome::upstream_failed, body_touched}};
  }
  if (failure == H2UpstreamFailure::connection_lost && reused) {
    co_return Obtained{nullptr, {AttemptEnd::stale, Outcome::upstream_failed, body_touched}};
  }
  if (failure != H2UpstreamFailure::aborted && failure != H2UpstreamFailure::none) {
    pool.report_failure(node, node_failure(failure, timed_out));
  }
  Outcome outcome = Outcome::upstream_failed;
  if (timed_out) {
    outcome = Clock::now() >= hard_deadline ? Outcome::deadline_exceeded : Outcome::upstream_timeout;
  } else if (failure == H2UpstreamFailure::reset) {
    outcome = Outcome::upstream_reset;
  }
  co_return Obtained{nullptr, {AttemptEnd::failed, outcome, body_touched}};
}

std::optional<uint64_t> content_length_of(const std::vector<http::Header>& headers) {
  for (const auto& h : headers) {
    if (h.name != "content-length") continue;
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(h.value.data(), h.value.data() + h.value.size(), v);
    if (ec == std::errc() && end == h.value.data() + h.value.size()) return v;
    return std::nullopt;  // nghttp2 checks it against the DATA; never guess
  }
  return std::nullopt;
}

// The response broke off after its head went out. A gRPC client whose deadline passed still
// gets a proper status in trailers; anyone else sees the connection close (never a short body
// passed off as complete).
boost::asio::awaitable<void> fail_started_response(RequestContext& ctx, Downstream& downstream,
                                                   const H2UpstreamStream& s, bool grpc, bool chunked) {
  const bool deadline = s.timed_out && Clock::now() >= s.hard_deadline;
  ctx.error = s.timed_out ? "upstream_timeout"sv : "upstream_truncated"sv;
  if (grpc && deadline && chunked) {
    ctx.response_trailers.clear();
    ctx.response_trailers.push_back({"grpc-status"sv, "4"sv});
    ctx.response_trailers.push_back({"grpc-message"sv, "deadline exceeded"sv});
    auto ec = co_await downstream.send_trailers(ctx, ctx.response_trailers);
    if (!ec) co_return;
  }
  ctx.close_connection = true;
}

// Steps 2 and 3: header filter, response head to the client, then the body as it arrives, then
// trailers.
boost::asio::awaitable<void> relay_h2_response(Worker& worker, RequestContext& ctx, Downstream& downstream,
                                               H2UpstreamPool& h2, H2UpstreamStream& s, bool grpc,
                                               const BodyPump& pump) {
  const auto& ucfg = h2.owner().config();
  ctx.upstream_status = s.status;
  ctx.response_status = s.status;
  ctx.response_headers.assign(s.headers.begin(), s.headers.end());
  size_t i = 0;
  if (!ctx.filters.empty()) {
    FilterStatus st = run_phase_hooks(ctx, Phase::header_filter, i);
    if (st == FilterStatus::suspend) st = co_await finish_phase(ctx, Phase::header_filter, i);
    if (st == FilterStatus::respond) {
      // A header filter answers instead of the upstream; the upstream stream is reset when the
      // attempt finishes it (attempt_h2), its body unread.
      co_await send_local_response(ctx, downstream, false);
      co_return;
    }
  }
  ResponseOut out;
  out.status = ctx.response_status;
  out.headers = &ctx.response_headers;
  out.no_body = ctx.head.method == http::Method::head || s.status == 204 || s.status == 304;
  out.keep_content_length_header = out.no_body;
  out.content_length = content_length_of(s.headers);
  if (!ctx.filters.empty() && !out.no_body && body_changes(ctx)) out.content_length.reset();  // streamed
  const bool chunked_out = !out.no_body && !out.content_length;
  const bool has_body_filters = !ctx.filters.empty();
  bool first = true;
  bool body_touched = false;
  boost::system::error_code client_ec;

  for (;;) {
    // The pump's client failed: the response cannot complete (the upstream stream is reset when
    // it is finished). Before the head went out the client gets what exchange() failures get.
    if (pump.failed) {
      ctx.close_connection = true;
      if (!first) break;
      if (pump.client_ec) {
        co_await fail_client_body(ctx, downstream, pump.client_ec);
      } else {
        co_await respond_error(ctx, downstream, Outcome::body_too_large);
      }
      break;
    }
    // A request body still going up (the upstream answered early): keep feeding it.
    if (!pump.running && !pump.stop && !s.body_end && s.body_taken() && s.failure == H2UpstreamFailure::none) {
      bool fed = co_await feed_body(ctx, downstream, h2, s, body_touched, client_ec);
      if (!fed) {
        ctx.close_connection = true;
        break;
      }
    }
    const bool end = s.end_stream;
    std::string_view piece = s.take_body();
    if (!end && piece.empty() && s.failure == H2UpstreamFailure::none && !first) {
      arm_main(s, pump, ucfg.read_timeout);
      co_await s.wait();
      continue;
    }
    // Not ctx.body_views: those may still be request pieces the provider has to copy.
    std::vector<std::string_view>& filtered = ctx.response_pieces;
    filtered.clear();
    if (!piece.empty()) filtered.push_back(piece);
    if (has_body_filters && !out.no_body) {
      const size_t waiting = run_body_filters(ctx, filtered, end);
      if (waiting != kBodyFiltersDone) co_await finish_body_filters(ctx, filtered, end, waiting);
    }
    std::span<const std::string_view> pieces(filtered.data(), filtered.size());
    uint64_t sent_bytes = 0;
    for (auto p : filtered) sent_bytes += p.size();
    const bool with_trailers = end && !s.trailers.empty();
    if (!pump.running) s.deadline = s.hard_deadline;  // the client's pace is not the upstream's fault
    boost::system::error_code dec;
    if (first) {
      if (!downstream.start_head(ctx, out, pieces, end && !with_trailers, dec)) dec = co_await downstream.finish_send(ctx);
      first = false;
    } else if (!filtered.empty() || (end && !with_trailers)) {
      dec = co_await downstream.send_body(ctx, pieces, end && !with_trailers);
    }
    if (!dec && with_trailers) {
      ctx.response_trailers.assign(s.trailers.begin(), s.trailers.end());
      dec = co_await downstream.send_trailers(ctx, ctx.response_trailers);
    }
    if (dec) {
      ctx.close_connection = true;
      break;
    }
    ctx.response_body_bytes += sent_bytes;
    h2.consume(&s, piece.size());
    if (end) break;
    if (s.failure != H2UpstreamFailure::none && !s.has_body()) {
      if (s.timed_out) worker.counters().upstream_timeouts.inc();
      if (s.failure != H2UpstreamFailure::aborted) h2.owner().report_failure(s.node(), node_failure(s.failure, s.timed_out));
      co_await fail_started_response(ctx, downstream, s, grpc, chunked_out);
      break;
    }
  }
}

}  // namespace

boost::asio::awaitable<Attempt> attempt_h2(Worker& worker, RequestContext& ctx, Downstream& downstream,
                                          upstream::UpstreamPool& pool, size_t node, const AttemptOptions& opt) {
  // gRPC: the client's own deadline caps every upstream wait (PROTOCOL-HTTP2.md, grpc-timeout).
  const bool grpc = is_grpc_request(ctx);
  auto hard_deadline = Clock::time_point::max();
  if (grpc) {
    for (const auto& h : ctx.headers) {
      if (!iequals(h.name, "grpc-timeout")) continue;
      if (auto t = parse_grpc_timeout(h.value)) {
        hard_deadline = ctx.start + std::chrono::duration_cast<Clock::duration>(*t);
      }
    }
  }

  BodyPump pump;
  Obtained got = co_await obtain_h2_response(worker, ctx, downstream, pool, node, opt, hard_deadline, grpc, pump);
  if (!got.stream) co_return got.failure;  // (a pump has been stopped)
  H2UpstreamStream* s = got.stream;
  co_await relay_h2_response(worker, ctx, downstream, *pool.h2(), *s, grpc, pump);
  // The response is over: a client still sending is cut off (the HTTP/2 stream is reset with
  // NO_ERROR when the pipeline ends; remaining DATA is discarded).
  if (pump.running) co_await stop_pump(downstream, *s, pump);
  ctx.drop_upstream();
  pool.h2()->finish(s);
  co_return Attempt{};
}

}  // namespace turnpike::proxy
