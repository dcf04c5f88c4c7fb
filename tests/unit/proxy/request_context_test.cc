// A pooled RequestContext, once reset, behaves exactly like a new one: every part is reset as a
// whole. (The response body's chunked decoder belongs to the upstream connection, not here.)
#include "turnpike/proxy/request_context.h"

#include <gtest/gtest.h>

#include <string>

#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {
namespace {

using namespace std::string_view_literals;

// Parses `raw` into the context's head and fields, the way the HTTP/1.1 side does.
void parse_head(RequestContext& ctx, std::string_view raw) {
  http::ParserLimits limits{8192, 65536, 100};
  http::ParseState state;
  http::ParseError err = http::ParseError::none;
  ASSERT_EQ(http::parse_request_head(raw.data(), raw.size(), limits, state, ctx.head, ctx.headers, err),
            http::ParseStatus::complete)
      << http::to_string(err);
}

// Fills every part of the context with the state a request leaves behind, the malformed chunked
// body of the defect report included.
void dirty(RequestContext& ctx, const RouteRuntime& route) {
  static const std::string raw = "POST /a?x=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  parse_head(ctx, raw);
  ctx.protocol = "HTTP/1.1";
  ctx.scheme = "https";
  ctx.client_ip = "10.0.0.1";
  ctx.remote_addr = "10.0.0.1:5000";
  ctx.host = "h";
  ctx.authority = "h";
  ctx.path = "/a";
  ctx.query = "x=1";
  ctx.has_query = true;
  ctx.upgrade = "websocket";
  ctx.start = std::chrono::steady_clock::now();
  ctx.match.matched = true;
  ctx.match.route_index = 3;
  ctx.match.param_count = 1;
  ctx.route = &route;
  ctx.request_edits.push_back({HeaderEdit::Op::add, "a", "b"});
  ctx.response_edits.push_back({HeaderEdit::Op::remove, "c", ""});
  ctx.upstream_override = 2;
  ctx.local_response.status = 403;
  ctx.local_response.content_type = "text/plain";
  ctx.local_response.body = "denied";
  ctx.local_response.headers.emplace_back("x", "y");
  ctx.keep("kept");
  std::vector<std::string_view> views;
  ctx.chunked.feed("ZZ\r\n", views);  // the malformed chunk size of the defect report
  ASSERT_TRUE(ctx.chunked.failed());
  ctx.body_remaining = 7;
  ctx.body_done = false;
  ctx.request_body_bytes = 9;
  ctx.body_views.push_back("piece");
  ctx.body_buffer = "read ahead by a plugin";
  ctx.body_buffered = true;
  ctx.body_replaced = true;
  ctx.body_error = boost::asio::error::message_size;
  ctx.response_status = 200;
  ctx.response_headers.push_back({"a", "b"});
  ctx.response_trailers.push_back({"t", "v"});
  ctx.response_body_bytes = 11;
  ctx.response_started = true;
  ctx.close_connection = true;
  ctx.upstream_addr = "127.0.0.1:80";
  ctx.upstream_status = 502;
  ctx.upstream_tries.begin("127.0.0.1:81");
  ctx.upstream_tries.end(502);
  ctx.upstream_time = std::chrono::seconds(1);
  ctx.error = "upstream_failed";
  ctx.hold_upstream([](void*) {}, &ctx);
  ctx.abort_upstream();
  ctx.out_head.put("HTTP/1.1 200 OK\r\n"sv);
  ctx.connection_tokens.push_back("close");
  ctx.forwarded_for = "1.2.3.4, 10.0.0.1";
  ctx.worker_counters = reinterpret_cast<WorkerCounters*>(&ctx);
  ctx.downstream = reinterpret_cast<Downstream*>(&ctx);
  ctx.response_pieces.push_back("piece");
  // FilterState (the Lua ctx table and its Vm are released by reset: tests/unit/lua).
  ctx.filters.push_back(nullptr);
  ctx.filter_slots.push_back(7);
  ctx.plugins = reinterpret_cast<PluginInstance*>(&ctx);
  ctx.consumer = 2;
  ctx.consumer_changed = true;
  ctx.request_id = "rid-1";
  ctx.upstream_path = "/rewritten";
  ctx.upstream_host = "other.host";
  ctx.current_plugin = "key-auth";
  ctx.body_pieces = &ctx.response_pieces;
  ctx.body_last = true;
  ctx.body_filters_skipped = 5;
  ctx.body_filter_index = 3;
  ctx.body_outputs.emplace_back("replaced");
  ctx.body_scratch = "joined";
}

// Every field of `a` equals the same field of a new context.
void expect_like_new(const RequestContext& a) {
  const RequestContext fresh;
  // RequestInput
  EXPECT_EQ(a.snapshot, fresh.snapshot);
  EXPECT_EQ(a.listener, fresh.listener);
  EXPECT_EQ(a.head.method, fresh.head.method);
  EXPECT_EQ(a.head.method_name, fresh.head.method_name);
  EXPECT_EQ(a.head.target, fresh.head.target);
  EXPECT_EQ(a.head.framing, fresh.head.framing);
  EXPECT_EQ(a.head.content_length, fresh.head.content_length);
  EXPECT_EQ(a.head.keep_alive, fresh.head.keep_alive);
  EXPECT_EQ(a.head.head_length, fresh.head.head_length);
  EXPECT_TRUE(a.headers.empty());
  EXPECT_EQ(a.protocol, fresh.protocol);
  EXPECT_EQ(a.scheme, fresh.scheme);
  EXPECT_EQ(a.client_ip, fresh.client_ip);
  EXPECT_EQ(a.remote_addr, fresh.remote_addr);
  EXPECT_EQ(a.host, fresh.host);
  EXPECT_EQ(a.authority, fresh.authority);
  EXPECT_EQ(a.path, fresh.path);
  EXPECT_EQ(a.query, fresh.query);
  EXPECT_EQ(a.has_query, fresh.has_query);
  EXPECT_EQ(a.upgrade, fresh.upgrade);
  EXPECT_EQ(a.start, fresh.start);
  EXPECT_EQ(a.worker_counters, fresh.worker_counters);
  EXPECT_EQ(a.downstream, fresh.downstream);
  // FilterState
  EXPECT_TRUE(a.filters.empty());
  EXPECT_TRUE(a.filter_slots.empty());
  EXPECT_EQ(a.plugins, fresh.plugins);
  EXPECT_FALSE(a.lua_ctx.valid());
  EXPECT_EQ(a.lua_vm, nullptr);
  EXPECT_EQ(a.consumer, fresh.consumer);
  EXPECT_EQ(a.consumer_changed, fresh.consumer_changed);
  EXPECT_TRUE(a.request_id.empty());
  EXPECT_EQ(a.upstream_path, fresh.upstream_path);
  EXPECT_EQ(a.upstream_host, fresh.upstream_host);
  EXPECT_EQ(a.current_plugin, fresh.current_plugin);
  EXPECT_EQ(a.body_pieces, fresh.body_pieces);
  EXPECT_EQ(a.body_last, fresh.body_last);
  EXPECT_EQ(a.body_filters_skipped, fresh.body_filters_skipped);
  EXPECT_EQ(a.body_filter_index, fresh.body_filter_index);
  EXPECT_TRUE(a.body_outputs.empty());
  EXPECT_TRUE(a.body_scratch.empty());
  EXPECT_TRUE(a.response_pieces.empty());
  // RoutingState
  EXPECT_EQ(a.match.matched, fresh.match.matched);
  EXPECT_EQ(a.match.route_index, fresh.match.route_index);
  EXPECT_EQ(a.match.param_count, fresh.match.param_count);
  EXPECT_EQ(a.route, fresh.route);
  EXPECT_TRUE(a.request_edits.empty());
  EXPECT_TRUE(a.response_edits.empty());
  EXPECT_EQ(a.upstream_override, fresh.upstream_override);
  EXPECT_EQ(a.local_response.status, fresh.local_response.status);
  EXPECT_EQ(a.local_response.content_type, fresh.local_response.content_type);
  EXPECT_TRUE(a.local_response.body.empty());
  EXPECT_TRUE(a.local_response.headers.empty());
  EXPECT_FALSE(a.pending.has_value());
  EXPECT_TRUE(a.arena.empty());
  // RequestBody: the decoder is back at its first state.
  EXPECT_FALSE(a.chunked.failed());
  EXPECT_FALSE(a.chunked.done());
  EXPECT_TRUE(a.chunked.error().empty());
  EXPECT_EQ(a.chunked.body_bytes(), 0u);
  EXPECT_EQ(a.body_remaining, fresh.body_remaining);
  EXPECT_EQ(a.body_done, fresh.body_done);
  EXPECT_EQ(a.request_body_bytes, fresh.request_body_bytes);
  EXPECT_TRUE(a.body_views.empty());
  EXPECT_TRUE(a.body_buffer.empty());
  EXPECT_EQ(a.body_buffered, fresh.body_buffered);
  EXPECT_EQ(a.body_replaced, fresh.body_replaced);
  EXPECT_EQ(a.body_error, fresh.body_error);
  // ResponseState
  EXPECT_EQ(a.response_status, fresh.response_status);
  EXPECT_TRUE(a.response_headers.empty());
  EXPECT_TRUE(a.response_trailers.empty());
  EXPECT_EQ(a.response_body_bytes, fresh.response_body_bytes);
  EXPECT_EQ(a.response_started, fresh.response_started);
  EXPECT_EQ(a.close_connection, fresh.close_connection);
  // LogState
  EXPECT_EQ(a.upstream_addr, fresh.upstream_addr);
  EXPECT_EQ(a.upstream_status, fresh.upstream_status);
  EXPECT_EQ(a.upstream_tries.size(), 0u);
  EXPECT_EQ(a.upstream_time, fresh.upstream_time);
  EXPECT_EQ(a.error, fresh.error);
  // UpstreamLink
  EXPECT_EQ(a.upstream_abort, fresh.upstream_abort);
  EXPECT_EQ(a.upstream_abort_arg, fresh.upstream_abort_arg);
  EXPECT_EQ(a.client_aborted, fresh.client_aborted);
  // SerializerScratch
  EXPECT_TRUE(a.out_head.empty());
  EXPECT_TRUE(a.connection_tokens.empty());
  EXPECT_TRUE(a.forwarded_for.empty());
}

TEST(RequestContextReset, RecycledContextIsLikeANewOne) {
  RouteRuntime route;
  RequestContext ctx;
  dirty(ctx, route);
  ctx.reset();
  expect_like_new(ctx);
}

TEST(RequestContextReset, KeepsContainerStorageSoAWarmContextDoesNotAllocate) {
  RouteRuntime route;
  RequestContext ctx;
  dirty(ctx, route);
  const auto* headers = ctx.headers.data();
  const auto* body_views = ctx.body_views.data();
  const size_t forwarded_capacity = ctx.forwarded_for.capacity();
  ctx.reset();
  EXPECT_EQ(ctx.headers.data(), headers);
  EXPECT_EQ(ctx.body_views.data(), body_views);
  EXPECT_EQ(ctx.forwarded_for.capacity(), forwarded_capacity);
}

// The defect: a malformed chunked body left the decoder failed in the pooled context, and the
// next request on it (a clean Content-Length POST from another client) got 400.
TEST(RequestContextReset, AMalformedChunkedBodyDoesNotReachTheNextRequest) {
  RequestContext ctx;
  parse_head(ctx, "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  std::vector<std::string_view> views;
  ctx.chunked.feed("ZZ\r\n", views);
  ASSERT_TRUE(ctx.chunked.failed());
  ctx.reset();

  // The next request, a clean chunked body this time, decodes as it would on a new context.
  RequestContext fresh;
  for (RequestContext* c : {&ctx, &fresh}) {
    parse_head(*c, "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    std::vector<std::string_view> got;
    const std::string_view body = "5\r\nhello\r\n0\r\n\r\n";
    EXPECT_EQ(c->chunked.feed(body, got), body.size());
    EXPECT_TRUE(c->chunked.done());
    EXPECT_FALSE(c->chunked.failed());
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], "hello");
  }
}

TEST(RequestContextReset, LocalResponseClearKeepsNothingButStorage) {
  LocalResponse lr;
  lr.status = 429;
  lr.content_type = "application/json";
  lr.body = std::string(100, 'x');
  lr.headers.emplace_back("Retry-After", "1");
  const size_t body_capacity = lr.body.capacity();
  lr.clear();
  EXPECT_EQ(lr.status, 0);
  EXPECT_TRUE(lr.content_type.empty());
  EXPECT_TRUE(lr.body.empty());
  EXPECT_TRUE(lr.headers.empty());
  EXPECT_EQ(lr.body.capacity(), body_capacity);
}

}  // namespace
}  // namespace turnpike::proxy
