// The request body on the pipeline's side: made ready before the first upstream attempt, read
// ahead when a plugin asks (turnpike.request.read_body: bounded), replaced when a plugin says so,
// and a client whose body fails answered once, here.
//
// Read ahead, the body's first bytes are copied into ctx.body_buffer; the forwarders send that
// buffer first and then go on reading the client as usual, so a body larger than the bound still
// streams (with backpressure) after the part a plugin looked at. A whole body read ahead can go
// again to another node on retry, since no byte of it has to be read twice.
#include "turnpike/proxy/pipeline.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

using boost::system::error_code;

boost::asio::awaitable<void> fail_client_body(RequestContext& ctx, Downstream& downstream, error_code ec) {
  ctx.close_connection = true;
  if (ctx.chunked.failed()) {
    co_await respond_error(ctx, downstream, Outcome::bad_request, ctx.chunked.error());
  } else if (ec == boost::asio::error::timed_out) {
    co_await respond_error(ctx, downstream, Outcome::request_timeout);
  } else if (ec == boost::asio::error::message_size) {
    co_await respond_error(ctx, downstream, Outcome::body_too_large);
  } else {
    ctx.error = "client_body_failed";
  }
}

namespace {

bool over_limit(const RequestContext& ctx) {
  const uint64_t max_body = ctx.snapshot->config->limits.max_body_size;
  return max_body != 0 && ctx.request_body_bytes > max_body;
}

void append_views(RequestContext& ctx) {
  for (auto v : ctx.body_views) ctx.body_buffer.append(v);
  ctx.body_views.clear();
}

}  // namespace

boost::asio::awaitable<bool> start_request_body(RequestContext& ctx, Downstream& downstream) {
  if (ctx.body_buffered) {
    // A plugin read ahead (or replaced the body): the buffer goes first, the rest (if any)
    // follows from the client.
    if (ctx.body_error) {
      co_await fail_client_body(ctx, downstream, ctx.body_error);
      co_return false;
    }
    ctx.body_views.clear();
    if (!ctx.body_buffer.empty()) ctx.body_views.push_back(ctx.body_buffer);
    co_return true;
  }
  if (ctx.head.framing == http::BodyFraming::none) co_return true;
  // Body bytes that came with the head. A chunked body is not forwarded before its first chunk
  // header has been seen to be valid, so a malformed one never reaches the upstream at all.
  downstream.preread_body(ctx);
  while (ctx.head.framing == http::BodyFraming::chunked && ctx.body_views.empty() && !ctx.body_done &&
         !ctx.chunked.failed()) {
    auto ec = co_await downstream.read_body(ctx);
    if (ec && !ctx.chunked.failed()) {
      co_await fail_client_body(ctx, downstream, ec);
      co_return false;
    }
  }
  if (ctx.chunked.failed()) {
    co_await fail_client_body(ctx, downstream, boost::asio::error::invalid_argument);
    co_return false;
  }
  co_return true;
}

boost::asio::awaitable<BodyRead> read_request_body(RequestContext& ctx, size_t max) {
  const size_t bound = std::min<uint64_t>(max, ctx.snapshot->config->lua.max_body_buffer);
  if (ctx.body_error) co_return BodyRead::failed;
  if (!ctx.body_buffered) {
    ctx.body_buffered = true;
    if (ctx.head.framing == http::BodyFraming::none) co_return BodyRead::whole;
    ctx.downstream->preread_body(ctx);
    append_views(ctx);
  }
  while (!ctx.body_done && ctx.body_buffer.size() < bound && !ctx.body_replaced) {
    error_code ec = co_await ctx.downstream->read_body(ctx);
    if (!ec && ctx.chunked.failed()) ec = boost::asio::error::invalid_argument;
    if (!ec && over_limit(ctx)) ec = boost::asio::error::message_size;
    if (ec) {
      ctx.body_error = ec;
      co_return BodyRead::failed;
    }
    append_views(ctx);
  }
  if (over_limit(ctx)) {
    ctx.body_error = boost::asio::error::message_size;
    co_return BodyRead::failed;
  }
  if (!ctx.body_done) co_return BodyRead::partial;
  // Whole: it goes upstream with its length, like a replaced body (an upstream that refuses
  // chunked uploads takes it).
  ctx.head.framing = http::BodyFraming::content_length;
  ctx.head.content_length = ctx.body_buffer.size();
  co_return BodyRead::whole;
}

bool replace_request_body(RequestContext& ctx, std::string_view body) {
  // Only a body read whole (or a request without one) can be replaced: the rest of a partly read
  // body would still have to be read and dropped, and its framing is the client's.
  if (ctx.response_started || ctx.upstream_status != 0 || ctx.body_error) return false;
  const bool whole = ctx.head.framing == http::BodyFraming::none || (ctx.body_buffered && ctx.body_done);
  if (!whole) return false;
  ctx.body_buffered = true;
  ctx.body_replaced = true;
  ctx.body_done = true;
  ctx.body_buffer.assign(body);
  // The upstream gets the new length (the forwarders frame by ctx.head, never by the client's
  // own Content-Length or Transfer-Encoding fields).
  ctx.head.framing = http::BodyFraming::content_length;
  ctx.head.content_length = body.size();
  return true;
}

}  // namespace turnpike::proxy
