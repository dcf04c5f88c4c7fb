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
#include "turnpike/upstream/balancer.h"

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
  retry_status,    // the node answered with a status in retry_on_statuses and the policy said it
                   // would go again (RetryPolicy::retries_status): the answer was discarded
};
std::string_view to_string(AttemptEnd e) noexcept;

struct Attempt {
  AttemptEnd end = AttemptEnd::done;
  Outcome outcome = Outcome::upstream_failed;  // the client's answer when not tried again
  bool body_read = false;  // body bytes beyond those that came with the head were read from the
                           // client: the request cannot be sent again
};

class RetryPolicy;

// What the policy tells an attempt.
struct AttemptOptions {
  const RetryPolicy* policy = nullptr;  // asked whether a response status is to be retried
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
//   * the balancer picks among the usable nodes the request has not seen fail (balancer.h), so a
//     retry never goes back to a failed node while another usable one is left;
//   * connect failures (nothing sent) go to another node, up to the upstream's `retries`;
//   * for idempotent requests, a timeout (retry_on_timeout) or a status in retry_on_statuses goes
//     to another node too, up to `retries`, and only while the upstream's retry budget (a share of
//     its requests, per worker) allows: these requests reached a node, and retrying them without
//     a bound would multiply the load of a struggling upstream. A status is judged before its
//     response is forwarded (the attempt asks retries_status), so a retry the budget refuses
//     leaves the client with the node's answer, not with a 502;
//   * a request the node did not process (refused, or a stale reused connection for an
//     idempotent method) goes again without counting against `retries` (nginx does the same),
//     at most kUnprocessedRetries times, and on a new connection after a stale one: the
//     connections parked beside it may be just as dead;
//   * nothing goes again once body bytes were read from the client, or once the client left.
// The policy also tells the balancer when each attempt starts and ends (outstanding requests,
// latency for ewma).
class RetryPolicy {
 public:
  static constexpr uint32_t kUnprocessedRetries = 4;

  RetryPolicy(upstream::UpstreamPool& pool, const RequestContext& ctx);
  RetryPolicy(const RetryPolicy&) = delete;
  RetryPolicy& operator=(const RetryPolicy&) = delete;

  // The node for the next attempt (the attempt counts as started for the balancer): the
  // balancer's choice among nodes not yet failed, or among all once every node has failed; a
  // tagged request (ctx.upstream_tag) prefers nodes with its tag.
  size_t pick(upstream::UpstreamPool& pool);
  // The attempt to `node` ended (whatever way): tells the balancer.
  void finished(size_t node, const Attempt& a, const RequestContext& ctx);
  // After attempt `a` to `node` ended in anything but done: whether to send the request again.
  bool again(const Attempt& a, size_t node, const RequestContext& ctx);
  // Whether a response with `status` from `node` is to be discarded and the request sent again
  // (asked by an attempt before it forwards the response; again() then says yes).
  bool retries_status(size_t node, int status) const;
  // A retry was refused by the retry budget (the pipeline counts it).
  bool budget_refused() const { return budget_refused_; }
  const AttemptOptions& options() const { return options_; }

 private:
  // A retry of a request that reached a node: within `retries`, to an untried node, and within
  // the budget (taken when `spend`).
  bool may_retry_received(size_t node, bool spend) const;

  upstream::UpstreamPool& pool_;
  upstream::TriedNodes tried_;  // nodes that failed this request
  upstream::PickRequest pick_;
  std::chrono::steady_clock::time_point attempt_start_;
  uint32_t retries_used_ = 0;
  uint32_t unprocessed_retries_ = 0;
  uint32_t retries_;
  size_t node_count_;
  bool idempotent_;
  mutable bool budget_refused_ = false;
  AttemptOptions options_;
};

// consistent_hash: the request's key as the upstream's hash_key says (balancer_key.cc); false
// when the request has none (the header, cookie, argument... is absent).
bool request_hash_key(const RequestContext& ctx, const config::HashKeyConfig& key, uint64_t& hash);

}  // namespace turnpike::proxy
