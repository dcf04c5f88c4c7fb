// The extension point of the request pipeline: an HttpFilter hooks into named phases.
//
// A filter is the shared, immutable *config half* of an extension (built once per snapshot, used
// by every worker at once — so its methods are const and keep per-request state in the
// RequestContext). Every hook does nothing by default; a filter overrides the phases it needs.
// Built-in C++ filters and (later) the Lua plugin runner implement this same interface.
//
// Return values of a hook:
//   proceed  — go on to the next filter / phase.
//   respond  — stop: answer the client with ctx.local_response (set it before returning).
//   suspend  — the filter started async work: it called ctx.suspend_with(awaitable) and the
//              pipeline co_awaits that, whose result (proceed/respond) then counts as the hook's.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string_view>
#include <vector>

namespace turnpike::proxy {

struct RequestContext;

enum class FilterStatus : unsigned char {
  proceed,  // continue the chain
  respond,  // answer with ctx.local_response and skip the rest of the request phases
  suspend,  // wait for the awaitable given to ctx.suspend_with()
};
std::string_view to_string(FilterStatus s) noexcept;

// The phases, in the order a request passes them. See docs/life-of-a-request.md.
enum class Phase : unsigned char {
  rewrite,          // after routing: may change path, query, request headers
  access,           // allow or deny (authentication, rate limits)
  upstream_select,  // may override the upstream or node choice
  header_filter,    // response head received (or local response built): may edit response headers
  body_filter,      // each response body chunk, as it passes
  log,              // after the last byte: metrics, access log; cannot change anything
};
std::string_view to_string(Phase p) noexcept;

class HttpFilter {
 public:
  virtual ~HttpFilter() = default;
  virtual std::string_view name() const = 0;
  // Order in the chain: higher runs first in every phase (the scale of APISIX's priorities:
  // authentication ~2500, rate limits ~1000, rewrites ~1000, logging low).
  virtual int priority() const { return 0; }

  // rewrite: runs once the route is known. May edit ctx.request_edits, ctx.path_override.
  virtual FilterStatus on_rewrite(RequestContext&) const { return FilterStatus::proceed; }
  // access: may deny with a local response (401, 403, 429 ...).
  virtual FilterStatus on_access(RequestContext&) const { return FilterStatus::proceed; }
  // upstream_select: may set ctx.upstream_override.
  virtual FilterStatus on_upstream_select(RequestContext&) const { return FilterStatus::proceed; }
  // header_filter: ctx.response_status and the response header list are known; may edit
  // ctx.response_edits. Runs for proxied and local responses alike.
  virtual FilterStatus on_response_headers(RequestContext&) const { return FilterStatus::proceed; }
  // body_filter: each piece of the response body on its way to the client (`last` on the final
  // call, which may carry no data), for proxied and local responses alike. `pieces` is the data
  // (several views, in order); a filter that changes the body points `pieces` at storage that
  // lives until the next call (its own, or ctx.body_outputs[its index]) and must say so with
  // changes_body(), which makes the response's length unknown (streamed) before its head is
  // sent. Returns false when the filter has to wait (a Lua body_filter that sleeps or calls the
  // HTTP client): the rest of its work is in ctx.body_wait, which the pipeline co_awaits before
  // the next filter runs (finish_body_filters); `pieces` then points at storage of the request's
  // own, since the connection's buffer may move on meanwhile.
  virtual bool on_response_body(RequestContext&, std::vector<std::string_view>& pieces, bool last) const {
    return true;
  }
  virtual bool changes_body() const { return false; }
  // log: after the response is finished (or failed). May read anything, change nothing the
  // client sees (the response is gone); a Lua log phase may still wait (it delays the connection's
  // next request, not this response).
  virtual boost::asio::awaitable<void> on_log(RequestContext&) const { co_return; }
  // Whether on_log does anything (the pipeline skips the coroutine otherwise).
  virtual bool has_log() const { return false; }
};

}  // namespace turnpike::proxy
