// Forwarding, split the way the pipeline reads it:
//
//   balancer (RetryPolicy::pick) → attempt (attempt_http1 / attempt_h2) → retry policy (again?)
//
// An attempt sends the request to one node and, when that node answers, streams the response to
// the client (header and body filters included). It never decides on its own to try another
// node: it says how it ended, and the one retry policy below decides for both protocols.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "turnpike/proxy/downstream.h"
#include "turnpike/proxy/outcome.h"
#include "turnpike/proxy/request_context.h"

namespace turnpike::upstream {
class UpstreamPool;
}

namespace turnpike::proxy {

class Worker;

// How one attempt ended.
enum class AttemptEnd : unsigned char {
  done,            // the request is over: answered (by the node, or by a header filter instead of
                   // it), failed on the client's side (its body; the answer has been sent), or the
                   // client left
  connect_failed,  // no connection or stream to the node: nothing was sent
  refused,         // the node refused the request unprocessed (HTTP/2 REFUSED_STREAM, RFC 9113
                   // §8.7): safe to send again whatever the method
  stale,           // a reused connection was lost before any response byte: the node may not have
                   // seen the request; safe to send again when the method is idempotent
  failed,          // the node failed the request after it was sent (timeout, invalid response,
                   // reset, close); the node has been reported (UpstreamPool::report_failure)
};
std::string_view to_string(AttemptEnd e) noexcept;

struct Attempt {
  AttemptEnd end = AttemptEnd::done;
  Outcome outcome = Outcome::upstream_failed;  // the client's answer when not tried again
  bool body_read = false;  // body bytes beyond those that came with the head were read from the
                           // client: the request cannot be sent again
};

// What the policy tells an attempt.
struct AttemptOptions {
  bool fresh_connection = false;  // never a parked connection (after a stale one)
  bool body_read = false;         // an earlier attempt read body bytes from the client
  std::chrono::steady_clock::time_point started;  // the first attempt's start (ctx.upstream_time)
};

// One attempt to an HTTP/1.1 node (forward_h1.cc) or an HTTP/2 node, h2c or h2 over TLS
// (forward_h2.cc). The request body bytes that came with the head are ready (start_request_body).
boost::asio::awaitable<Attempt> attempt_http1(Worker& worker, RequestContext& ctx, Downstream& downstream,
                                             upstream::UpstreamPool& pool, size_t node, const AttemptOptions& opt);
boost::asio::awaitable<Attempt> attempt_h2(Worker& worker, RequestContext& ctx, Downstream& downstream,
                                          upstream::UpstreamPool& pool, size_t node, const AttemptOptions& opt);

// Which node the next attempt goes to, and whether a failed attempt goes again:
//   * connect failures (nothing sent) go to a node not yet tried, up to the upstream's `retries`;
//   * a request the node did not process (refused, or a stale reused connection for an
//     idempotent method) goes again without counting against `retries` (nginx does the same),
//     at most kUnprocessedRetries times, and on a new connection after a stale one: the
//     connections parked beside it may be just as dead;
//   * nothing goes again once body bytes were read from the client, or once the client left;
//   * a node that failed a request it received is not retried (issue 14 adds retries on
//     timeouts and statuses for idempotent requests, bounded by a budget).
class RetryPolicy {
 public:
  static constexpr uint32_t kUnprocessedRetries = 4;

  RetryPolicy(const upstream::UpstreamPool& pool, const RequestContext& ctx);

  // The node for the next attempt: the balancer's choice among nodes not yet failed, or among all
  // once every node has failed; a tagged request (ctx.upstream_tag) prefers nodes with its tag.
  size_t pick(upstream::UpstreamPool& pool);
  // After attempt `a` to `node` ended in anything but done: whether to send the request again.
  bool again(const Attempt& a, size_t node, const RequestContext& ctx);
  const AttemptOptions& options() const { return options_; }

 private:
  uint64_t tried_ = 0;  // nodes that failed to connect (bit per node, the first 64)
  uint32_t connect_attempts_ = 0;
  uint32_t unprocessed_retries_ = 0;
  uint32_t retries_;
  size_t node_count_;
  bool idempotent_;
  std::string_view tag_;  // the request's node tag (in its arena), empty for none
  AttemptOptions options_;
};

}  // namespace turnpike::proxy
