// The per-worker set of HTTP/2 connections to one upstream, and the pooled H2Streams requests
// use. See include/turnpike/upstream/h2.h.
//
// Hot path (a request on a warm connection): a vector scan for a connection with room, a stream
// from the free list (its buffers keep their capacity), no lock.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "h2_connection.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

std::string_view to_string(H2UpstreamFailure f) noexcept {
  switch (f) {
    case H2UpstreamFailure::none: return "none";
    case H2UpstreamFailure::connect_failed: return "connect_failed";
    case H2UpstreamFailure::refused: return "refused";
    case H2UpstreamFailure::connection_lost: return "connection_lost";
    case H2UpstreamFailure::reset: return "reset";
    case H2UpstreamFailure::timed_out: return "timed_out";
    case H2UpstreamFailure::aborted: return "aborted";
  }
  return "unknown";
}

// ---- H2UpstreamStream ----

boost::asio::awaitable<void> H2UpstreamStream::wait() {
  if (signaled_) {
    signaled_ = false;
    co_return;
  }
  waker_.expires_at(Clock::time_point::max());
  co_await waker_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  signaled_ = false;
}

void H2UpstreamStream::notify() {
  signaled_ = true;
  waker_.cancel();
}

boost::asio::awaitable<void> H2UpstreamStream::wait_body() {
  if (body_signaled_) {
    body_signaled_ = false;
    co_return;
  }
  body_waker_.expires_at(Clock::time_point::max());
  co_await body_waker_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  body_signaled_ = false;
}

void H2UpstreamStream::notify_body() {
  body_signaled_ = true;
  body_waker_.cancel();
}

void H2UpstreamStream::abort() {
  if (failure == H2UpstreamFailure::none) failure = H2UpstreamFailure::aborted;
  deadline = Clock::time_point::max();
  if (conn_) conn_->abort(this);
  notify();
  notify_body();
}

std::string_view H2UpstreamStream::take_body() {
  taken_.clear();
  taken_.swap(incoming_);
  return taken_;
}

void H2UpstreamStream::reset_for_reuse() {
  nva.clear();
  nv_bytes.clear();
  body = {};
  body_end = false;
  status = 0;
  headers_done = false;
  end_stream = false;
  headers.clear();
  trailers.clear();
  failure = H2UpstreamFailure::none;
  timed_out = false;
  reset_code = 0;
  reused_connection = false;
  deadline = Clock::time_point::max();
  hard_deadline = Clock::time_point::max();
  signaled_ = false;
  body_signaled_ = false;
  conn_ = nullptr;
  id_ = -1;
  owner_done_ = false;
  h2_closed_ = true;
  headers_sent_ = false;
  reset_sent_ = false;
  deferred_ = false;
  in_trailers_ = false;
  pending_status_ = 0;
  piece_ = 0;
  offset_ = 0;
  unconsumed_ = 0;
  field_bytes_.clear();
  trailer_bytes_.clear();
  refs_.clear();
  // Buffers keep their capacity for the next request, up to a point: a stream that carried a
  // large body must not pin a window's worth of memory in the free list.
  constexpr size_t kKeepCapacity = 64 * 1024;
  if (incoming_.capacity() > kKeepCapacity) std::string().swap(incoming_);
  if (taken_.capacity() > kKeepCapacity) std::string().swap(taken_);
  incoming_.clear();
  taken_.clear();
}

void H2UpstreamStream::begin_block(bool trailers_block) {
  in_trailers_ = trailers_block;
  refs_.clear();
  (trailers_block ? trailer_bytes_ : field_bytes_).clear();
  pending_status_ = 0;
}

void H2UpstreamStream::add_field(std::string_view name, std::string_view value) {
  std::string& bytes = in_trailers_ ? trailer_bytes_ : field_bytes_;
  FieldRef r;
  r.name_off = static_cast<uint32_t>(bytes.size());
  r.name_len = static_cast<uint32_t>(name.size());
  bytes.append(name);
  r.value_off = static_cast<uint32_t>(bytes.size());
  r.value_len = static_cast<uint32_t>(value.size());
  bytes.append(value);
  refs_.push_back(r);
}

void H2UpstreamStream::end_block() {
  // Views are made only now: the byte store no longer grows for this block.
  const std::string& bytes = in_trailers_ ? trailer_bytes_ : field_bytes_;
  std::vector<http::Header>& out = in_trailers_ ? trailers : headers;
  out.clear();
  for (const auto& r : refs_) {
    out.push_back({std::string_view(bytes).substr(r.name_off, r.name_len),
                   std::string_view(bytes).substr(r.value_off, r.value_len)});
  }
  refs_.clear();
}

// ---- H2UpstreamPool ----

H2UpstreamPool::H2UpstreamPool(boost::asio::io_context& ioc, UpstreamPool& owner, const H2UpstreamCounters& counters)
    : ioc_(ioc), owner_(owner), counters_(counters) {}

H2UpstreamPool::~H2UpstreamPool() {
  while (!connections_.empty()) connections_.back()->orphan();
}

size_t H2UpstreamPool::connections() const { return connections_.size(); }

H2UpstreamConnection* H2UpstreamPool::connection_with_room(size_t node) {
  // The fullest connection with room first would pack streams tighter; the first one with room
  // is as good for correctness and keeps the scan trivial.
  for (H2UpstreamConnection* c : connections_) {
    if (c->node() == node && c->has_room()) return c;
  }
  return nullptr;
}

boost::asio::awaitable<H2UpstreamStream*> H2UpstreamPool::open_stream(size_t node, Clock::time_point hard_deadline) {
  H2UpstreamStream* s;
  if (!free_streams_.empty()) {
    s = free_streams_.back();
    free_streams_.pop_back();
  } else {
    streams_.push_back(std::make_unique<H2UpstreamStream>(ioc_));
    s = streams_.back().get();
    s->reset_for_reuse();
  }
  s->pool_ = this;
  s->node_ = node;
  s->hard_deadline = hard_deadline;
  ++active_;
  // A connection still being set up takes streams up to the configured limit; when its SETTINGS
  // show a lower one, the streams over it move on (to a new connection if need be). Bounded: an
  // upstream announcing a limit of 0 must not make us open connections forever.
  for (int moves = 0;; ++moves) {
    H2UpstreamConnection* c = connection_with_room(node);
    if (!c) {
      c = new H2UpstreamConnection(ioc_, *this, node);
      connections_.push_back(c);
      c->attach(s);
      c->start();
    } else {
      c->attach(s);
    }
    while (s->failure == H2UpstreamFailure::none && s->conn_ && !s->conn_->ready()) co_await s->wait();
    if (s->failure != H2UpstreamFailure::none || !s->conn_) break;
    if (moves >= 8 || s->conn_->stream_count() <= s->conn_->capacity()) break;
    s->conn_->detach_unsubmitted(s);
  }
  if (s->failure == H2UpstreamFailure::none && !s->conn_) s->failure = H2UpstreamFailure::connect_failed;
  co_return s;
}

bool H2UpstreamPool::submit(H2UpstreamStream* s, bool has_body) {
  if (!s->conn_ || !s->conn_->ready()) {
    if (s->failure == H2UpstreamFailure::none) s->failure = H2UpstreamFailure::refused;
    return false;
  }
  return s->conn_->submit(s, has_body);
}

void H2UpstreamPool::resume_body(H2UpstreamStream* s) {
  if (s->conn_) s->conn_->resume_body(s);
}

void H2UpstreamPool::consume(H2UpstreamStream* s, size_t n) {
  if (s->conn_) s->conn_->consume(s, n);
}

void H2UpstreamPool::finish(H2UpstreamStream* s) {
  --active_;
  s->owner_done_ = true;
  s->body = {};
  H2UpstreamConnection* c = s->conn_;
  if (!c) {
    recycle(s);
  } else if (s->id_ < 0) {
    c->detach_unsubmitted(s);
    recycle(s);
  } else {
    c->cancel(s);  // recycled when nghttp2 closes it (maybe already inside this call)
  }
}

void H2UpstreamPool::recycle(H2UpstreamStream* s) {
  s->H2UpstreamStreamHook::unlink();
  s->reset_for_reuse();
  free_streams_.push_back(s);
}

void H2UpstreamPool::connection_gone(H2UpstreamConnection* c) {
  std::erase(connections_, c);
}

void H2UpstreamPool::sweep(Clock::time_point now) {
  // Backwards: a connection that closes removes only itself, at an index already visited.
  for (size_t i = connections_.size(); i-- > 0;) {
    if (i < connections_.size()) connections_[i]->sweep(now);
  }
}

void H2UpstreamPool::close_idle() {
  // With no request holding a stream, what streams remain are resets on their way out: those
  // connections go too, so a draining worker is not kept alive by them.
  for (size_t i = connections_.size(); i-- > 0;) {
    if (i < connections_.size() && (active_ == 0 || connections_[i]->stream_count() == 0)) {
      connections_[i]->shutdown();
    }
  }
}

}  // namespace turnpike::upstream
