// The request pipeline: the life of one request, protocol-neutral. See docs/life-of-a-request.md.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>

#include "turnpike/proxy/downstream.h"
#include "turnpike/proxy/outcome.h"
#include "turnpike/proxy/request_context.h"

namespace turnpike::proxy {

class Worker;

// Runs every phase for a parsed request and answers it through `downstream`. Never throws;
// failures become an error response (or, once the response has started, a closed connection).
boost::asio::awaitable<void> run_request(Worker& worker, RequestContext& ctx, Downstream& downstream);

// The gateway's error body: {"error": code, "message": message}, JSON-escaped.
std::string error_json(std::string_view code, std::string_view message);

// Answers with one of the gateway's outcomes (outcome.h): its status, and its code and message
// (or `message`, when given, for details) as JSON; counted per outcome on the worker.
boost::asio::awaitable<void> respond_error(RequestContext& ctx, Downstream& downstream, Outcome outcome,
                                           std::string_view message = {});

// Makes ctx.local_response the outcome's JSON answer (a filter returning respond), counted.
void set_outcome_response(RequestContext& ctx, Outcome outcome);

// Answers with a gateway-made response: {"error": code, "message": message} as JSON. For the
// request parser's own errors; everything else has an Outcome.
boost::asio::awaitable<void> respond_error(RequestContext& ctx, Downstream& downstream, int status,
                                           std::string_view code, std::string_view message);

// Sends ctx.local_response (header filters run first, unless `header_filters` is false: the
// response comes from a header filter itself). A header filter may change the status and the
// fields; one that answers (respond) replaces the response with its own, without running the
// header filters again.
boost::asio::awaitable<void> send_local_response(RequestContext& ctx, Downstream& downstream,
                                                 bool header_filters = true);

// The request body bytes that came with the head, made ready to forward (before the first attempt).
// False when the body was malformed or unreadable; the error response has then been sent.
boost::asio::awaitable<bool> start_request_body(RequestContext& ctx, Downstream& downstream);

// How read_request_body ended.
enum class BodyRead : unsigned char {
  whole,    // ctx.body_buffer holds the whole body (empty without one)
  partial,  // it holds the body's first bytes (at least the bound asked for); the rest streams
  failed,   // the client's body failed (ctx.body_error): the request is answered before forwarding
};

// Reads the request body ahead into ctx.body_buffer, until it ends or `max` bytes (capped by
// lua.max_body_buffer) are there. The forwarders send the buffer first. For plugins
// (turnpike.request.read_body) and C++ filters (from a suspended hook).
boost::asio::awaitable<BodyRead> read_request_body(RequestContext& ctx, size_t max);

// Replaces the request body (framed with a Content-Length from then on). Refused (false) unless
// the body was read whole, or the request had none, and nothing went upstream yet.
bool replace_request_body(RequestContext& ctx, std::string_view body);

// The client's body could not be read: malformed chunking gets a 400, a too large one a 413, a
// too slow client a 408 (if it still listens), a vanished one nothing. The connection closes
// either way.
boost::asio::awaitable<void> fail_client_body(RequestContext& ctx, Downstream& downstream,
                                              boost::system::error_code ec);

// A consumer was attached during the hook of filter `i`: merges the consumer's chain into the
// request's (its conf replacing the route's for the same plugin, new ones by priority) and moves
// `i` to where that filter is now.
void merge_consumer(RequestContext& ctx, size_t& i);

// The body filters: runs the filters' on_response_body on `pieces` (which a filter may replace),
// from filter `from` on. Returns kBodyFiltersDone, or the index of a filter that waits: then the
// caller co_awaits finish_body_filters with it (most pieces never wait, and cost no coroutine):
//   size_t waiting = run_body_filters(ctx, pieces, last);
//   if (waiting != kBodyFiltersDone) co_await finish_body_filters(ctx, pieces, last, waiting);
inline constexpr size_t kBodyFiltersDone = SIZE_MAX;
size_t run_body_filters(RequestContext& ctx, std::vector<std::string_view>& pieces, bool last, size_t from = 0);
boost::asio::awaitable<void> finish_body_filters(RequestContext& ctx, std::vector<std::string_view>& pieces,
                                                 bool last, size_t waiting);
// Whether any filter of the request's chain changes bodies (then the length is unknown).
bool body_changes(const RequestContext& ctx);

// Runs one phase's hooks of the route's filters from filter `i` on (callers start at 0); stops at
// the first that does not proceed and returns its status. On suspend `i` is left at the filter
// that suspended: finish the phase with finish_phase(ctx, phase, i). Synchronous: no coroutine.
FilterStatus run_phase_hooks(RequestContext& ctx, Phase phase, size_t& i);

// Finishes a phase whose filter `i` suspended: awaits that filter's work (its result is the
// hook's), then runs the hooks after it, awaiting any that suspend in turn. Filters before `i`
// are not run again. A filter that suspends without work fails the request (500, fail closed).
boost::asio::awaitable<FilterStatus> finish_phase(RequestContext& ctx, Phase phase, size_t i);

}  // namespace turnpike::proxy
