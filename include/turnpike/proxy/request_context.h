// Per-request state, shared by every phase of the pipeline and by both protocol sides.
//
// Protocol-neutral: an HTTP/1.1 connection fills it from its parser, an HTTP/2 stream from its
// decoded header block. Contexts are pooled per worker and reset between requests, so their
// vectors and strings keep their capacity: a warmed-up worker allocates nothing per request.
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <forward_list>
#include <memory>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "turnpike/common/head_buffer.h"
#include "turnpike/http/chunked.h"
#include "turnpike/http/parser.h"
#include "turnpike/log/log.h"
#include "turnpike/lua/vm.h"
#include "turnpike/proxy/filter.h"
#include "turnpike/router/router.h"

struct ssl_st;

namespace turnpike::proxy {

struct Snapshot;
struct ListenerRuntime;
struct RouteRuntime;
class HttpFilter;
class PluginInstance;
struct WorkerCounters;
}  // namespace turnpike::proxy
namespace turnpike::metrics {
class WorkerMetrics;
}  // namespace turnpike::metrics
namespace turnpike::proxy {
class Downstream;

struct HeaderEdit {
  enum class Op : unsigned char {
    set,     // remove every field with this name, then add one
    add,     // add one more field line
    remove,  // remove every field with this name
  };
  Op op = Op::set;
  std::string_view name;   // must outlive the request: config strings, or ctx.arena
  std::string_view value;
};

// A response the gateway makes itself (static route, error, a filter's denial).
struct LocalResponse {
  int status = 0;  // 0: none
  std::string_view content_type;
  std::string body;
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  void clear();  // as new, keeping the storage of body and headers
};

// The context is made of parts, one per concern. Each part resets as a whole, by assigning it
// a fresh value (see reset_part in request_context.cc), so a field added to a part later is
// reset without anyone remembering to: a hand-kept list of fields once missed the chunked
// decoder, and one client's malformed body failed the next client's requests. Only the storage
// of the part's containers is carried over (emptied), so a warmed-up worker still allocates
// nothing per request. RequestContext inherits the parts, so fields read as ctx.<field>.

// Set by the downstream side before the pipeline runs.
struct RequestInput {
  const Snapshot* snapshot = nullptr;
  const ListenerRuntime* listener = nullptr;
  http::RequestHead head;
  std::vector<http::Header> headers;  // the request's fields (views into the connection buffer)
  std::string_view protocol;          // "HTTP/1.1", "HTTP/1.0" or "HTTP/2.0"
  std::string_view scheme = "http";
  std::string_view client_ip;         // text form
  std::string_view remote_addr;       // "ip:port"
  std::string_view peer_ip;           // real_ip: the hop that connected, which X-Forwarded-For appends; else empty
  const ssl_st* tls = nullptr;        // the client connection's TLS session (access log), null without TLS
  std::string host;                   // lower-case, without port: what routing uses
  std::string_view authority;         // Host / :authority as sent
  std::string path;                   // normalized path: what routing saw and the upstream gets
  std::string_view query;
  bool has_query = false;
  std::string_view upgrade;           // "websocket" when the client asks to switch (and can tunnel)
  std::chrono::steady_clock::time_point start;
  WorkerCounters* worker_counters = nullptr;  // the serving worker's (outcome counters)
  metrics::WorkerMetrics* worker_metrics = nullptr;  // the serving worker's metric cells
  Downstream* downstream = nullptr;   // the client side (set by run_request)
};

// Routing and the filters' decisions.
struct RoutingState {
  router::MatchResult match;
  const RouteRuntime* route = nullptr;
  std::vector<HeaderEdit> request_edits;   // applied when the upstream request is written
  std::vector<HeaderEdit> response_edits;  // applied when the response head is written
  size_t upstream_override = SIZE_MAX;     // an upstream_select filter's choice (snapshot index)
  std::string_view upstream_tag;           // the node tag the request prefers (a plugin's; in arena)
  LocalResponse local_response;
  std::optional<boost::asio::awaitable<FilterStatus>> pending;  // see FilterStatus::suspend
  // Owned strings that edits may point into: stable addresses, and an empty list allocates
  // nothing (a deque allocates even when default-constructed or moved from).
  std::forward_list<std::string> arena;
};

// The request's filter chain and what its filters keep for it.
struct FilterState {
  // The chain this request runs, highest priority first: the route's merged chain (listener,
  // route and global plugins), with the consumer's plugins merged in once one is attached.
  std::vector<const HttpFilter*> filters;
  // One word per filter (same index as `filters`), zero at the start of each request: a C++
  // filter's per-request state, or an index into storage it keeps itself.
  std::vector<uintptr_t> filter_slots;
  PluginInstance* plugins = nullptr;  // this worker's plugins for the request's snapshot
  lua::Ref lua_ctx;                   // the `ctx` table every Lua plugin of the request shares
  // Keeps lua_ctx's Vm alive until lua_ctx is released (declared after it: a reset releases the
  // table first, then the Vm).
  std::shared_ptr<lua::Vm> lua_vm;
  int consumer = -1;                  // the attached consumer (snapshot index), -1 none
  bool consumer_changed = false;      // attached during the current hook: merge its plugins
  std::string request_id;             // set by a plugin (request-id); logged
  std::string_view upstream_path;     // a plugin's path for the upstream (empty: ctx.path)
  std::string_view upstream_host;     // a plugin's Host for the upstream (empty: the client's)
  std::string_view current_plugin;    // the Lua plugin running now (for its log lines)
  // Response body filters: the pieces a Lua body_filter is looking at, whether it is the last,
  // and each filter's replacement of the current piece (by filter index; storage reused).
  std::vector<std::string_view>* body_pieces = nullptr;
  bool body_last = false;
  size_t body_filter_index = 0;
  std::vector<std::string> body_outputs;
  // Bit i: filter i leaves this response's body as it is (a Lua plugin's
  // turnpike.response.skip_body_filter() in header_filter): not called for its pieces, and it
  // does not make the length unknown. Filters past the 64th cannot opt out.
  uint64_t body_filters_skipped = 0;
  std::string body_scratch;           // the current piece joined, for a plugin reading it
  // A body filter that waits: the rest of its call (HttpFilter::on_response_body), and the copy
  // of the pieces it looks at meanwhile.
  std::optional<boost::asio::awaitable<void>> body_wait;
  std::string body_wait_copy;
};

// The request body, filled by the downstream side as it reads. Its chunked decoder is the
// request's alone: an HTTP/1.1 upstream's response body is decoded by the decoder of the
// upstream connection (UpstreamConnection::response_chunks).
struct RequestBody {
  http::ChunkedDecoder chunked;
  uint64_t body_remaining = 0;             // content-length framing: bytes still to read
  bool body_done = true;
  uint64_t request_body_bytes = 0;
  std::vector<std::string_view> body_views;  // current decoded body pieces
  // Read ahead for a plugin (read_request_body): the body's first bytes, all of them when
  // body_done, forwarded before the rest is read. Bounded by lua.max_body_buffer.
  std::string body_buffer;
  bool body_buffered = false;              // read_request_body ran: body_buffer is the body's start
  bool body_replaced = false;              // a plugin replaced the body with body_buffer
  boost::system::error_code body_error;    // reading ahead failed: answered before forwarding
};

// The response as the client gets it.
struct ResponseState {
  int response_status = 0;
  std::vector<std::string_view> response_pieces;  // the HTTP/2 forwarder's body pieces to filter
  std::vector<http::Header> response_headers;  // upstream's fields (views into its buffer)
  std::vector<http::Header> response_trailers; // upstream's trailer fields, when it sent any
  uint64_t response_body_bytes = 0;
  bool response_started = false;           // first byte sent to the client: no error page now
  bool close_connection = false;           // the client connection cannot be reused after this
};

// What the log phase reports.
struct LogState {
  std::string_view upstream_addr;
  int upstream_status = 0;
  log::UpstreamTries upstream_tries;       // every node tried, in order (fixed capacity)
  std::chrono::steady_clock::duration upstream_time{};
  std::chrono::steady_clock::duration upstream_connect_time{};  // the last attempt's new connection (metrics)
  std::string_view error;                  // short machine-readable reason a request failed
};

// The client giving up. When the client gives up on the request (an HTTP/2 stream reset, or lost
// with its connection, before its response is complete), the client side calls abort_upstream():
// the forwarder's hook (set while it holds an upstream connection or stream) cancels the upstream
// work, so the pipeline stops now instead of when the upstream answers, and the upstream side is
// not reused.
struct UpstreamLink {
  using UpstreamAbortFn = void (*)(void*);
  UpstreamAbortFn upstream_abort = nullptr;
  void* upstream_abort_arg = nullptr;
  bool client_aborted = false;
  void hold_upstream(UpstreamAbortFn fn, void* arg) { upstream_abort = fn, upstream_abort_arg = arg; }
  void drop_upstream() { upstream_abort = nullptr, upstream_abort_arg = nullptr; }
  void abort_upstream() {
    client_aborted = true;
    if (upstream_abort) upstream_abort(upstream_abort_arg);
  }
};

// Scratch space for the sides' serializers: meaningful only inside one call.
struct SerializerScratch {
  HeadBuffer out_head;                     // serialized head being written
  std::vector<std::string_view> connection_tokens;
  std::string forwarded_for;               // X-Forwarded-For when the client sent a chain to extend
  // Scatter list for one writev. Kept here, not in coroutine frames, so those stay small enough
  // for Asio's per-thread frame recycling (it recycles blocks up to about 1 KiB).
  std::array<boost::asio::const_buffer, 40> iov;
};

struct RequestContext : RequestInput,
                        RoutingState,
                        FilterState,
                        RequestBody,
                        ResponseState,
                        LogState,
                        UpstreamLink,
                        SerializerScratch {
  void suspend_with(boost::asio::awaitable<FilterStatus> work) { pending.emplace(std::move(work)); }
  // Keeps `s` alive for the rest of the request and returns a view of it.
  std::string_view keep(std::string s) {
    arena.push_front(std::move(s));
    return arena.front();
  }
  // Makes the context equivalent to a new one (every part reset as a whole), keeping only the
  // storage of its containers. A pooled context is reset before it serves another request.
  void reset();
};

}  // namespace turnpike::proxy
