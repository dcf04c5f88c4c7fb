// The life of a request, top to bottom (docs/life-of-a-request.md walks through it):
//
//   route → rewrite → access → (static response | upstream select → balancer → attempt
//   → retry policy) → log
//
// The response-side phases (header filter, body filter) run inside whichever step produces the
// response: send_local_response() for gateway-made answers, the attempt (attempt_http1() or
// attempt_h2(), forward.h) for proxied ones. Gateway errors are answered in one place, respond_error(): JSON for HTTP
// clients, a gRPC trailers-only response for gRPC clients.
//
// Hot path: no allocation after warm-up (the context is pooled); filter hooks are plain calls and
// only a filter that really suspends costs a coroutine.
#include "turnpike/proxy/pipeline.h"
#include "real_ip.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "forward.h"
#include "grpc.h"
#include "turnpike/proxy/headers.h"
#include "turnpike/common/strings.h"
#include "turnpike/log/log.h"
#include "turnpike/proxy/snapshot.h"
#include "turnpike/proxy/worker.h"

namespace turnpike::proxy {

using namespace std::string_view_literals;

std::string_view to_string(FilterStatus s) noexcept {
  switch (s) {
    case FilterStatus::proceed: return "proceed";
    case FilterStatus::respond: return "respond";
    case FilterStatus::suspend: return "suspend";
  }
  return "unknown";
}

std::string_view to_string(Phase p) noexcept {
  switch (p) {
    case Phase::rewrite: return "rewrite";
    case Phase::access: return "access";
    case Phase::upstream_select: return "upstream_select";
    case Phase::header_filter: return "header_filter";
    case Phase::body_filter: return "body_filter";
    case Phase::log: return "log";
  }
  return "unknown";
}

// A consumer was attached by the filter at `i` (an authentication plugin): its plugins join the
// request's chain — replacing the route's use of the same plugin, else in priority order — and
// `i` moves to where that filter is now, so the phase goes on after it. A consumer plugin ordered
// before the authenticating one does not run this phase (it comes too late for it).
void merge_consumer(RequestContext& ctx, size_t& i) {
  ctx.consumer_changed = false;
  const HttpFilter* current = ctx.filters[i];
  const FilterChain& add = ctx.snapshot->consumers[static_cast<size_t>(ctx.consumer)].filters;
  for (const HttpFilter* f : add) {
    auto same = std::find_if(ctx.filters.begin(), ctx.filters.end(),
                             [f](const HttpFilter* o) { return o->name() == f->name(); });
    if (same != ctx.filters.end()) {
      *same = f;
      continue;
    }
    auto at = std::find_if(ctx.filters.begin(), ctx.filters.end(),
                           [f](const HttpFilter* o) { return o->priority() < f->priority(); });
    ctx.filter_slots.insert(ctx.filter_slots.begin() + (at - ctx.filters.begin()), 0);
    ctx.filters.insert(at, f);
  }
  i = static_cast<size_t>(std::find(ctx.filters.begin(), ctx.filters.end(), current) - ctx.filters.begin());
}

void set_outcome_response(RequestContext& ctx, Outcome outcome) {
  const OutcomeInfo& o = info(outcome);
  if (ctx.worker_counters) ctx.worker_counters->outcomes[static_cast<size_t>(outcome)].inc();
  ctx.error = o.code;
  LocalResponse& lr = ctx.local_response;
  lr.clear();
  lr.status = o.status;
  lr.content_type = "application/json";
  lr.body = error_json(o.code, o.message);
}

namespace {
bool body_filter_skipped(const RequestContext& ctx, size_t i) {
  return i < 64 && (ctx.body_filters_skipped >> i & 1) != 0;
}
}  // namespace

size_t run_body_filters(RequestContext& ctx, std::vector<std::string_view>& pieces, bool last, size_t from) {
  for (size_t i = from; i < ctx.filters.size(); ++i) {
    if (body_filter_skipped(ctx, i)) continue;
    ctx.body_filter_index = i;
    if (!ctx.filters[i]->on_response_body(ctx, pieces, last)) return i;
  }
  return kBodyFiltersDone;
}

boost::asio::awaitable<void> finish_body_filters(RequestContext& ctx, std::vector<std::string_view>& pieces,
                                                 bool last, size_t waiting) {
  while (waiting != kBodyFiltersDone && ctx.body_wait) {
    // The pieces may point into a buffer the connection refills while the filter waits (an
    // HTTP/2 stream's DATA): from here on they are the request's own copy. Built apart first:
    // the pieces may already point into the previous copy.
    std::string copy;
    for (std::string_view p : pieces) copy.append(p);
    ctx.body_wait_copy.swap(copy);
    pieces.clear();
    if (!ctx.body_wait_copy.empty()) pieces.push_back(ctx.body_wait_copy);
    boost::asio::awaitable<void> rest = std::move(*ctx.body_wait);
    ctx.body_wait.reset();
    co_await std::move(rest);
    waiting = run_body_filters(ctx, pieces, last, waiting + 1);
  }
}

bool body_changes(const RequestContext& ctx) {
  for (size_t i = 0; i < ctx.filters.size(); ++i) {
    if (ctx.filters[i]->changes_body() && !body_filter_skipped(ctx, i)) return true;
  }
  return false;
}

FilterStatus run_phase_hooks(RequestContext& ctx, Phase phase, size_t& i) {
  const auto& filters = ctx.filters;
  for (; i < filters.size(); ++i) {
    const HttpFilter& f = *filters[i];
    FilterStatus st = FilterStatus::proceed;
    switch (phase) {
      case Phase::rewrite: st = f.on_rewrite(ctx); break;
      case Phase::access: st = f.on_access(ctx); break;
      case Phase::upstream_select: st = f.on_upstream_select(ctx); break;
      case Phase::header_filter: st = f.on_response_headers(ctx); break;
      case Phase::body_filter:
      case Phase::log: break;  // not status-returning phases
    }
    if (ctx.consumer_changed) merge_consumer(ctx, i);
    if (st != FilterStatus::proceed) return st;
  }
  return FilterStatus::proceed;
}

namespace {

// A filter broke the suspend contract: the request fails closed (an access filter that
// misbehaves must not let the request through).
FilterStatus filter_failed(RequestContext& ctx, Phase phase, size_t i, std::string_view why) {
  spdlog::error("filter {} {} in phase {}; the request fails", ctx.filters[i]->name(), why, to_string(phase));
  set_outcome_response(ctx, Outcome::filter_failed);
  return FilterStatus::respond;
}

}  // namespace

boost::asio::awaitable<FilterStatus> finish_phase(RequestContext& ctx, Phase phase, size_t i) {
  for (;;) {
    // Filter i suspended: its own work decides its outcome; the filters before it are done.
    if (!ctx.pending) co_return filter_failed(ctx, phase, i, "suspended without work");
    auto work = std::move(*ctx.pending);
    ctx.pending.reset();
    FilterStatus st = co_await std::move(work);
    if (st == FilterStatus::suspend) co_return filter_failed(ctx, phase, i, "resumed with suspend");
    if (ctx.consumer_changed) merge_consumer(ctx, i);
    if (st == FilterStatus::respond) co_return st;
    st = run_phase_hooks(ctx, phase, ++i);
    if (st != FilterStatus::suspend) co_return st;
  }
}

namespace {

void json_escape_into(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static const char* hex = "0123456789abcdef";
      out.append("\\u00"sv);
      out.push_back(hex[(c >> 4) & 0xF]);
      out.push_back(hex[c & 0xF]);
    } else {
      out.push_back(c);
    }
  }
}

void write_access_log(const RequestContext& ctx) {
  if (!log::access_enabled()) return;
  log::AccessRecord r;
  r.remote_addr = ctx.remote_addr;
  auto elapsed = std::chrono::steady_clock::now() - ctx.start;
  r.start = std::chrono::system_clock::now() -
            std::chrono::duration_cast<std::chrono::system_clock::duration>(elapsed);
  r.method = ctx.head.method_name;
  r.target = ctx.head.target;
  r.protocol = ctx.protocol;
  r.host = ctx.authority;
  r.status = ctx.response_status;
  r.request_bytes = ctx.request_body_bytes;
  r.response_bytes = ctx.response_body_bytes;
  r.duration_us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
  if (ctx.route) r.route = ctx.route->config->name;
  r.upstream_addr = ctx.upstream_addr;
  r.upstream_status = ctx.upstream_status;
  r.upstream_tries = ctx.upstream_tries.view();
  r.upstream_duration_us =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(ctx.upstream_time).count());
  for (const auto& h : ctx.headers) {
    if (iequals(h.name, "user-agent")) r.user_agent = h.value;
    else if (iequals(h.name, "referer")) r.referer = h.value;
  }
  r.error = ctx.error;
  if (ctx.consumer >= 0) r.consumer = ctx.snapshot->config->consumers[static_cast<size_t>(ctx.consumer)].username;
  r.request_id = ctx.request_id;
  r.scheme = ctx.scheme;
  if (ctx.tls) {
    // Static strings of OpenSSL's: nothing is copied.
    r.ssl_protocol = SSL_get_version(ctx.tls);
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ctx.tls)) r.ssl_cipher = SSL_CIPHER_get_name(cipher);
  }
  r.headers = ctx.headers;
  log::write_access(r);
}

// The worker's counters of upstream failures, for the attempt that ends the request.
void count_upstream_failure(Worker& worker, Outcome outcome) {
  auto& counters = worker.counters();
  switch (outcome) {
    case Outcome::upstream_connect_timeout:
    case Outcome::upstream_timeout:
    case Outcome::deadline_exceeded: counters.upstream_timeouts.inc(); break;
    case Outcome::upstream_bad_response:
    case Outcome::upstream_reset: counters.upstream_bad_responses.inc(); break;
    default: break;
  }
}

// ---- metrics (metrics/shard.h): array indexes into the worker's own cells, no lock ----

metrics::MethodClass method_class(http::Method m) {
  switch (m) {
    case http::Method::get:
    case http::Method::head:
    case http::Method::options:
    case http::Method::trace: return metrics::MethodClass::read;
    case http::Method::post:
    case http::Method::put:
    case http::Method::patch:
    case http::Method::del: return metrics::MethodClass::write;
    default: return metrics::MethodClass::other;
  }
}

uint64_t micros(std::chrono::steady_clock::duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return us > 0 ? static_cast<uint64_t>(us) : 0;
}

uint32_t upstream_series(const Snapshot& snapshot, size_t upstream) {
  return upstream < snapshot.upstream_series.size() ? snapshot.upstream_series[upstream] : 0;
}

// A node's metric id. A node the snapshot did not number gets an id past the cells, which
// count it in the overflow series (metrics::CellBlock clamps).
uint32_t node_series(const Snapshot& snapshot, size_t upstream, size_t node) {
  constexpr uint32_t kUnnumbered = ~uint32_t{0};
  if (upstream >= snapshot.node_series.size()) return kUnnumbered;
  const auto& ids = snapshot.node_series[upstream];
  return node < ids.size() ? ids[node] : kUnnumbered;
}

// After each attempt: its new connection's connect time, and how it failed if it did.
void record_attempt(Worker& worker, RequestContext& ctx, uint32_t series, const Attempt& a) {
  metrics::WorkerMetrics& m = worker.metrics();
  if (ctx.upstream_connect_time.count() != 0) {
    m.upstream_connect(series, micros(ctx.upstream_connect_time));
    ctx.upstream_connect_time = {};
  }
  if (a.end != AttemptEnd::done) m.upstream_failure(series, static_cast<size_t>(a.outcome));
}

// The request's own series, in the log phase: by route, method class and status.
void record_request(Worker& worker, const RequestContext& ctx) {
  metrics::WorkerMetrics& m = worker.metrics();
  if (!m.enabled()) return;
  m.request(ctx.route ? ctx.route->series : 0, method_class(ctx.head.method), ctx.response_status,
            micros(std::chrono::steady_clock::now() - ctx.start), ctx.request_body_bytes, ctx.response_body_bytes);
}

}  // namespace

std::string error_json(std::string_view code, std::string_view message) {
  std::string body = "{\"error\":\"";
  json_escape_into(body, code);
  body.append("\",\"message\":\""sv);
  json_escape_into(body, message);
  body.append("\"}\n"sv);
  return body;
}

boost::asio::awaitable<void> send_local_response(RequestContext& ctx, Downstream& downstream,
                                                 bool header_filters) {
  LocalResponse& lr = ctx.local_response;
  auto adopt_local = [&ctx, &lr] {
    ctx.response_headers.clear();
    if (!lr.content_type.empty()) ctx.response_headers.push_back({"Content-Type", lr.content_type});
    for (const auto& [name, value] : lr.headers) ctx.response_headers.push_back({name, value});
    ctx.response_status = lr.status;
  };
  adopt_local();
  if (header_filters) {
    size_t i = 0;
    FilterStatus st = run_phase_hooks(ctx, Phase::header_filter, i);
    if (st == FilterStatus::suspend) st = co_await finish_phase(ctx, Phase::header_filter, i);
    if (st == FilterStatus::respond) {
      ctx.response_edits.clear();  // edits made for the response being replaced
      adopt_local();
    }
  }
  if (ctx.response_status != lr.status && ctx.response_status >= 100 && ctx.response_status <= 599) {
    lr.status = ctx.response_status;  // a header filter changed it
  }

  ResponseOut out;
  out.status = lr.status;
  out.headers = &ctx.response_headers;
  out.no_body = ctx.head.method == http::Method::head || lr.status == 204 || lr.status == 304;
  // The body filters see the gateway's own bodies too, as one last piece.
  std::vector<std::string_view>& pieces = ctx.response_pieces;
  pieces.clear();
  if (!lr.body.empty()) pieces.push_back(lr.body);
  if (!out.no_body && !ctx.filters.empty()) {
    const size_t waiting = run_body_filters(ctx, pieces, true);
    if (waiting != kBodyFiltersDone) co_await finish_body_filters(ctx, pieces, true, waiting);
  }
  uint64_t length = 0;
  for (auto p : pieces) length += p.size();
  out.content_length = out.no_body ? lr.body.size() : length;
  std::span<const std::string_view> send(pieces.data(), out.no_body ? 0 : pieces.size());
  boost::system::error_code ec;
  if (!downstream.start_head(ctx, out, send, true, ec)) ec = co_await downstream.finish_send(ctx);
  if (ec) {
    ctx.close_connection = true;
  } else {
    ctx.response_body_bytes += out.no_body ? 0 : length;
  }
}

boost::asio::awaitable<void> respond_error(RequestContext& ctx, Downstream& downstream, int status,
                                           std::string_view code, std::string_view message) {
  if (ctx.client_aborted) co_return;  // nobody to answer; the log step records why
  if (ctx.response_started) {
    // Too late for an error page: the client already has part of another response.
    ctx.close_connection = true;
    co_return;
  }
  ctx.error = code;
  LocalResponse& lr = ctx.local_response;
  lr.headers.clear();
  if (is_grpc_request(ctx)) {
    // gRPC "trailers-only": HTTP 200 and the outcome in grpc-status / grpc-message, which an
    // HTTP/2 client gets as one HEADERS frame with END_STREAM.
    lr.status = 200;
    lr.content_type = "application/grpc";
    lr.body.clear();
    std::string& text = ctx.arena.emplace_front();
    append_decimal(text, static_cast<uint64_t>(grpc_status_for_http(status)));
    const size_t digits = text.size();
    grpc_percent_encode(message, text);
    std::string_view all = text;
    lr.headers.emplace_back("grpc-status", all.substr(0, digits));
    lr.headers.emplace_back("grpc-message", all.substr(digits));
  } else {
    lr.status = status;
    lr.content_type = "application/json";
    lr.body = error_json(code, message);
  }
  co_await send_local_response(ctx, downstream);
}

boost::asio::awaitable<void> respond_error(RequestContext& ctx, Downstream& downstream, Outcome outcome,
                                           std::string_view message) {
  const OutcomeInfo& o = info(outcome);
  if (ctx.worker_counters) ctx.worker_counters->outcomes[static_cast<size_t>(outcome)].inc();
  co_await respond_error(ctx, downstream, o.status, o.code, message.empty() ? o.message : message);
}

boost::asio::awaitable<void> run_request(Worker& worker, RequestContext& ctx, Downstream& downstream) {
  ctx.worker_counters = &worker.counters();
  ctx.worker_metrics = &worker.metrics();
  ctx.downstream = &downstream;
  if (ctx.listener->config->real_ip) resolve_real_ip(ctx);
  // ---- route ----
  router::MatchInput in;
  in.host = ctx.host;
  in.path = ctx.path;
  in.method = ctx.head.method;
  in.headers = ctx.headers.data();
  in.header_count = ctx.headers.size();
  ctx.listener->router->match(in, ctx.match);
  if (!ctx.match.matched) {
    co_await respond_error(ctx, downstream, Outcome::no_route);
  } else {
    ctx.route = &ctx.snapshot->routes[ctx.match.route_index];
    const FilterChain& chain = ctx.listener->chains[ctx.match.route_index];
    ctx.filters.assign(chain.begin(), chain.end());
    ctx.filter_slots.assign(chain.size(), 0);
    if (ctx.snapshot->plugins) ctx.plugins = worker.plugins().find(ctx.snapshot->generation);
    // ---- rewrite, access ----
    // Each phase runs its hooks as plain calls; only a filter that really suspends costs a
    // coroutine, and the phase then goes on after that filter (finish_phase).
    size_t i = 0;
    FilterStatus st = run_phase_hooks(ctx, Phase::rewrite, i);
    if (st == FilterStatus::suspend) st = co_await finish_phase(ctx, Phase::rewrite, i);
    if (st == FilterStatus::proceed) {
      i = 0;
      st = run_phase_hooks(ctx, Phase::access, i);
      if (st == FilterStatus::suspend) st = co_await finish_phase(ctx, Phase::access, i);
    }
    if (st == FilterStatus::respond) {
      co_await send_local_response(ctx, downstream);
    } else if (const auto& respond = ctx.route->config->respond) {
      // ---- static response ----
      ctx.local_response.status = respond->status;
      ctx.local_response.content_type = {};
      ctx.local_response.headers.clear();
      for (const auto& [name, value] : respond->headers) ctx.local_response.headers.emplace_back(name, value);
      ctx.local_response.body.assign(respond->body);
      co_await send_local_response(ctx, downstream);
    } else {
      // ---- upstream select, forward ----
      i = 0;
      st = run_phase_hooks(ctx, Phase::upstream_select, i);
      if (st == FilterStatus::suspend) st = co_await finish_phase(ctx, Phase::upstream_select, i);
      if (st == FilterStatus::respond) {
        co_await send_local_response(ctx, downstream);
      } else if (!ctx.snapshot->config->via.empty() && via_lists(ctx.headers, ctx.snapshot->config->via)) {
        // ---- forwarding loop ----
        // The request already passed through this gateway and would be forwarded again: a route
        // leads back to one of our own listeners (turnpike -t warns about such configs). Only
        // forwarding is refused, so a gateway may still answer locally on an internal listener.
        co_await respond_error(ctx, downstream, Outcome::loop_detected);
      } else {
        // ---- balancer → attempt → retry policy ----
        // Each attempt goes to one node and, when that node answers, streams its response
        // through the header and body filters; the policy decides whether a failed one goes
        // again (forward.h). The body bytes that came with the head (or that a plugin read
        // ahead) are made ready first; a request without a body costs no coroutine for that.
        bool body_ready = true;
        if (ctx.body_buffered || ctx.head.framing != http::BodyFraming::none) {
          body_ready = co_await start_request_body(ctx, downstream);
        }
        size_t upstream = ctx.upstream_override != SIZE_MAX ? ctx.upstream_override : ctx.route->upstream_index;
        upstream::UpstreamPool& pool = worker.pool_for(*ctx.snapshot, upstream);
        const bool http1 = pool.config().protocol == config::UpstreamProtocol::http1;
        RetryPolicy policy(pool, ctx);
        const uint32_t series = upstream_series(*ctx.snapshot, upstream);
        worker.metrics().in_flight(series, +1);
        while (body_ready) {
          const size_t node = policy.pick(pool);
          if (node == SIZE_MAX) {  // every node is out and the upstream's all_down policy is fail
            co_await respond_error(ctx, downstream, Outcome::no_healthy_upstream);
            break;
          }
          ctx.upstream_addr = pool.upstream().nodes[node].address;
          ctx.upstream_tries.begin(ctx.upstream_addr, std::chrono::steady_clock::now());
          // (Not a ?: of two co_awaits: GCC 12 mishandles co_await inside conditional expressions.)
          const uint32_t node_id = node_series(*ctx.snapshot, upstream, node);
          worker.metrics().node_in_flight(node_id, +1);
          Attempt a;
          if (http1) {
            a = co_await attempt_http1(worker, ctx, downstream, pool, node, policy.options());
          } else {
            a = co_await attempt_h2(worker, ctx, downstream, pool, node, policy.options());
          }
          worker.metrics().node_in_flight(node_id, -1);
          policy.finished(node, a, ctx);
          const bool responded =
              a.end == AttemptEnd::retry_status || (a.end == AttemptEnd::done && ctx.upstream_status > 0);
          ctx.upstream_tries.finish(responded, ctx.upstream_connect_time, std::chrono::steady_clock::now());
          record_attempt(worker, ctx, series, a);
          if (a.end == AttemptEnd::done || a.end == AttemptEnd::retry_status) {
            if (ctx.upstream_status > 0) pool.report_status(node, ctx.upstream_status);  // passive checks
          }
          if (a.end == AttemptEnd::done) break;
          if (policy.again(a, node, ctx)) {
            worker.counters().retries.inc();
            continue;
          }
          if (policy.budget_refused()) worker.counters().retry_budget_exhausted.inc();
          ctx.upstream_time = std::chrono::steady_clock::now() - policy.options().started;
          count_upstream_failure(worker, a.outcome);
          co_await respond_error(ctx, downstream, a.outcome);
          break;
        }
        worker.metrics().in_flight(series, -1);
        if (ctx.upstream_status != 0) worker.metrics().upstream_response(series, micros(ctx.upstream_time));
      }
    }
  }
  // ---- log ----
  if (ctx.client_aborted) {
    // What nginx logs as 499 ("client closed request"): the client left before its response was
    // complete, whatever the upstream side made of the cancellation.
    if (!ctx.response_started) ctx.response_status = 499;
    ctx.error = "client_reset";
  }
  for (const HttpFilter* f : ctx.filters) {
    if (f->has_log()) co_await f->on_log(ctx);
  }
  write_access_log(ctx);
  record_request(worker, ctx);
}

}  // namespace turnpike::proxy
