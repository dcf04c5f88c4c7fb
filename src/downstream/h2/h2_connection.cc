// HTTP/2 client connections: the I/O loop, timeouts from the worker's sweep, graceful and
// abusive shutdowns (GOAWAY). The nghttp2 callbacks live in h2_session.cc, streams in h2_stream.cc.
//
// Hot path: one pooled 16 KiB block borrowed per read turn (an idle connection holds none), one
// output string reused across turns, no timer per stream (deadlines are stores checked by the
// sweep), no lock.
#include "h2_connection.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "downstream_h2.h"
#include "turnpike/proxy/pipeline.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {

namespace {
using boost::system::error_code;
constexpr size_t kOutBatch = 64 * 1024;  // bytes taken from nghttp2 per write
constexpr int kReadsPerTurn = 4;         // then write what they produced before reading on
constexpr auto kGoawayGrace = std::chrono::seconds(1);  // notice → final GOAWAY (≥ 1 RTT)
constexpr auto kDrainTick = std::chrono::milliseconds(250);  // a busy connection checks for drain
// Recycled stream objects (each with its waiting loop) kept per connection: enough for a client
// that keeps a few dozen requests in flight. A connection idle this long parks (h2_park.cc).
constexpr size_t kFreeStreams = 32;
constexpr auto kParkAfter = std::chrono::seconds(1);
// A recycled stream keeps buffers up to this size (header arena, body buffers); larger ones are
// freed, so 32 warm objects cost a connection at most ~2 MiB even after a burst of huge requests.
constexpr size_t kKeepBufferCapacity = 16 * 1024;
}  // namespace

std::string_view to_string(H2Goaway g) noexcept {
  switch (g) {
    case H2Goaway::none: return "none";
    case H2Goaway::notice: return "notice";
    case H2Goaway::final: return "final";
    case H2Goaway::calm: return "calm";
  }
  return "unknown";
}

void serve_h2(DownstreamWorker& worker, std::unique_ptr<tls::Transport> transport, std::string listener,
              std::string remote, size_t ip_len, std::string_view already_read) {
  auto conn = std::make_unique<H2Connection>(worker, std::move(transport), std::move(listener), std::move(remote), ip_len);
  if (!conn->start(already_read)) return;  // destroyed: socket closed
  boost::asio::co_spawn(worker.io(), H2Connection::serve(std::move(conn), std::nullopt), boost::asio::detached);
}

H2Connection::H2Connection(DownstreamWorker& worker, std::unique_ptr<Transport> transport, std::string listener,
                           std::string remote, size_t ip_len)
    : worker_(worker),
      transport_(std::move(transport)),
      listener_(std::move(listener)),
      remote_(std::move(remote)),
      ip_len_(ip_len) {
  worker_.add_connection(*this, listener_, transport_->is_tls() ? metrics::ConnProtocol::h2_tls : metrics::ConnProtocol::h2c);
  worker_.counters().h2_connections.inc();
}

H2Connection::~H2Connection() {
  // Normally empty by now (run() shuts, then waits for the last stream loop). Left over only when
  // the worker's io_context is torn down with the connection parked: deleting a stream then
  // destroys its parked loop with it.
  if (awake_) {
    while (!awake_->live.empty()) delete &awake_->live.front();
    for (H2Stream* s : awake_->free_streams) delete s;
  }
  if (session_) nghttp2_session_del(session_);
  worker_.connection_closed(*this);
}

void H2Connection::wake() {
  if (wake_ || dead_) return;
  wake_ = true;
  if (waiting_read_) transport_->cancel();
}

// ---------------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------------

boost::asio::awaitable<void> H2Connection::serve(std::unique_ptr<H2Connection> self,
                                                 std::optional<error_code> resumed) {
  // (Kept as two statements: GCC 12 miscompiles a co_await inside an if condition.)
  const bool idle = co_await self->run(resumed);
  if (idle) park(std::move(self));
}

bool H2Connection::on_readable(error_code ec) {
  if (dead_) return false;
  if (ec == boost::asio::error::operation_aborted) {
    wake_ = false;  // a stream submitted something, or a timer-driven change: go round
    return true;
  }
  if (ec) return false;
  return read_and_process();
}

boost::asio::awaitable<bool> H2Connection::run(std::optional<error_code> resumed) {
  for (bool go_on = !resumed || on_readable(*resumed); go_on;) {
    if (!produce_and_write()) break;
    if (a().out_pos < a().out.size()) {
      // The client does not take our output: stop reading until it does (backpressure).
      if (a().write_deadline == Clock::time_point::max()) {
        a().write_deadline = Clock::now() + limits().send_timeout;
        note_deadline(a().write_deadline);
      }
      auto ec = co_await transport_->wait_writable();
      if (ec || dead_) break;
      continue;
    }
    a().write_deadline = Clock::time_point::max();
    if (goaway_ == H2Goaway::calm) {
      co_await linger();  // the error GOAWAY is written: make sure the client gets to read it
      break;
    }
    if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) break;
    if (wake_) {
      wake_ = false;
      continue;
    }
    if (park_wanted_ && can_park()) co_return true;
    waiting_read_ = true;
    auto ec = co_await transport_->wait_readable();
    waiting_read_ = false;
    go_on = on_readable(ec);
  }
  shut();
  // Stream loops (running a pipeline, or ending) hold pointers to their streams and to us: wait
  // for the last one.
  while (a().loops > 0) {
    co_await a().all_done.wait();
  }
  co_return false;
}

boost::asio::awaitable<void> H2Connection::linger() {
  // Closing with unread input makes the kernel send a reset, which can destroy the GOAWAY before
  // the client reads it. So: stop sending, then read and drop what still comes, for a bounded
  // time and amount (the sweep ends it at the linger deadline).
  transport_->shutdown_send();
  a().linger_deadline = Clock::now() + std::chrono::seconds(1);
  note_deadline(a().linger_deadline);
  BufferPool& pool = worker_.buffers();
  for (size_t drained = 0; drained < (1u << 20);) {
    auto ec = co_await transport_->wait_readable();
    if (ec || dead_) break;
    char* block = pool.acquire();
    error_code rec;
    size_t n = transport_->read_some(block, BufferPool::kBlockSize, rec);
    pool.release(block);
    if (rec == boost::asio::error::would_block || rec == boost::asio::error::try_again) continue;
    if (rec) break;
    drained += n;
  }
}

bool H2Connection::read_and_process() {
  BufferPool& pool = worker_.buffers();
  char* block = pool.acquire();
  bool ok = true;
  a().now = Clock::now();
  for (int i = 0; i < kReadsPerTurn; ++i) {
    error_code ec;
    size_t n = transport_->read_some(block, BufferPool::kBlockSize, ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) break;
    if (ec) {
      if (ec != boost::asio::error::eof) spdlog::debug("h2 client {}: read: {}", remote_, ec.message());
      ok = false;
      break;
    }
    if (!receive(block, n)) break;
    if (goaway_ == H2Goaway::calm || nghttp2_session_want_write(session_)) break;
  }
  pool.release(block);
  return ok;
}

void H2Connection::on_recv_error(ssize_t rv) {
  // A callback aborted for abuse (calm_code_ set), or nghttp2 gave up on the connection.
  uint32_t code = calm_code_;
  if (code == 0) {
    switch (rv) {
      case NGHTTP2_ERR_FLOODED:
      case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS: code = NGHTTP2_ENHANCE_YOUR_CALM; break;
      case NGHTTP2_ERR_HEADER_COMP: code = NGHTTP2_COMPRESSION_ERROR; break;
      case NGHTTP2_ERR_NOMEM:
      case NGHTTP2_ERR_CALLBACK_FAILURE: code = NGHTTP2_INTERNAL_ERROR; break;
      default: code = NGHTTP2_PROTOCOL_ERROR; break;
    }
    worker_.counters().h2_protocol_errors.inc();
    spdlog::debug("h2 client {}: session error: {}", remote_, nghttp2_strerror(static_cast<int>(rv)));
  }
  nghttp2_session_terminate_session(session_, code);
  goaway_ = H2Goaway::calm;
}

bool H2Connection::produce_and_write() {
  std::string& out = a().out;
  size_t& pos = a().out_pos;
  if (pos == out.size()) {
    out.clear();
    pos = 0;
    // Only refilled once everything is written, so a partial TLS write is retried with the
    // same bytes at the same address.
    while (out.size() < kOutBatch) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        spdlog::debug("h2 client {}: mem_send: {}", remote_, nghttp2_strerror(static_cast<int>(n)));
        return false;
      }
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
  }
  if (pos == out.size()) return true;
  error_code ec;
  boost::asio::const_buffer buf(out.data() + pos, out.size() - pos);
  size_t done = transport_->write_some(std::span(&buf, 1), ec);
  if (ec) {
    spdlog::debug("h2 client {}: write: {}", remote_, ec.message());
    return false;
  }
  pos += done;
  if (pos == out.size() && out.capacity() > 4 * kOutBatch) std::string().swap(out);
  return true;
}

void H2Connection::shut() {
  dead_ = true;
  transport_->close();  // idempotent
  deadline_ = Clock::time_point::max();
  if (on_idle_list_) {
    worker_.mark_busy(*this);
    on_idle_list_ = false;
  }
  for (auto it = a().live.begin(); it != a().live.end();) {
    H2Stream* s = &*it++;
    stream_closed(s, NGHTTP2_CANCEL);
  }
  for (H2Stream* s : a().free_streams) retire(s);
  a().free_streams.clear();
  std::string().swap(a().out);
  a().out_pos = 0;
}

// ---------------------------------------------------------------------------------------------
// Timeouts (called by the worker's 100 ms sweep when deadline() has passed)
// ---------------------------------------------------------------------------------------------

void H2Connection::expire() {
  const auto now = Clock::now();
  if (dead_) return;
  if (worker_.stopping()) {
    // The drain timeout ran out (Worker::force_stop): close now, whatever is in flight.
    dead_ = true;
    transport_->cancel();
    transport_->close();
    return;
  }
  if (!session_) {
    // Parked without its session (h2_park.cc), it has no stream, no write and no GOAWAY pending,
    // and drain and the connection limit reach it through close_if_idle(): only the idle timeout
    // acts. A session is not rebuilt, nor the connection woken, just to look at it.
    if (idle_deadline_ > now) {
      recompute_deadline();
      return;
    }
    if (!ensure_session()) return;
  }
  auto& counters = worker_.counters();
  if (!on_idle_list_ && worker_.draining() && goaway_ == H2Goaway::none) start_graceful("drain");
  if (a().linger_deadline <= now) {
    dead_ = true;
    transport_->cancel();
    return;
  }
  if (a().write_deadline <= now) {
    counters.send_timeouts.inc();
    spdlog::debug("h2 client {}: send timeout", remote_);
    dead_ = true;
    transport_->cancel();
    return;
  }
  if (a().header_deadline <= now) {
    // A header block started and never finished: the whole connection is stuck behind it.
    counters.header_timeouts.inc();
    spdlog::debug("h2 client {}: header timeout", remote_);
    a().header_deadline = Clock::time_point::max();
    calm_down(NGHTTP2_PROTOCOL_ERROR, nullptr, "header block timeout");
  }
  if (idle_deadline_ <= now) {
    counters.h2_idle_timeouts.inc();
    spdlog::debug("h2 client {}: idle timeout", remote_);
    idle_deadline_ = Clock::time_point::max();
    send_final_goaway();
  }
  if (a().goaway_deadline <= now) {
    a().goaway_deadline = Clock::time_point::max();
    send_final_goaway();
  }
  if (a().trim_deadline <= now) {
    a().trim_deadline = Clock::time_point::max();
    if (no_streams()) prepare_park();
  }
  // A parked connection has no stream (nor an Awake to make just to look).
  if (awake_) {
    for (auto& s : awake_->live) {
      if (s.read_deadline_ <= now) {
        s.read_deadline_ = Clock::time_point::max();
        s.timed_out_ = true;
        counters.body_timeouts.inc();
        // The pipeline answers 408 if it still can; the stream is reset when it ends.
        s.read_event_.signal(worker_.io(), boost::asio::error::timed_out);
        spdlog::debug("h2 client {}: stream {}: {} timeout", remote_, s.id_, to_string(H2StreamWait::body));
      }
      if (s.send_deadline_ <= now) {
        s.send_deadline_ = Clock::time_point::max();
        s.timed_out_ = true;
        counters.send_timeouts.inc();
        reset_stream(&s, NGHTTP2_CANCEL);
        s.send_event_.signal(worker_.io(), boost::asio::error::timed_out);
        spdlog::debug("h2 client {}: stream {}: {} timeout", remote_, s.id_, to_string(H2StreamWait::send));
      }
    }
  }
  recompute_deadline();
  wake();
}

void H2Connection::recompute_deadline() {
  Clock::time_point d = idle_deadline_;
  if (awake_) {  // (a parked connection has no stream, no write, no header block, no GOAWAY)
    const Awake& w = *awake_;
    d = std::min({d, w.linger_deadline, w.write_deadline, w.header_deadline, w.goaway_deadline, w.trim_deadline});
    for (const auto& s : w.live) d = std::min(d, s.deadline());
  }
  if (!on_idle_list_ && goaway_ == H2Goaway::none) d = std::min(d, Clock::now() + kDrainTick);
  deadline_ = d;
}

void H2Connection::update_idle() {
  // Idle: no stream is open and no pipeline runs. Then the idle timer runs, and the connection is
  // on the worker's idle list, where drain and the connection limit find it (close_if_idle).
  // Busy, it is off that list and its deadline ticks every kDrainTick so that expire() notices a
  // drain and sends the GOAWAY while its streams are still running.
  if (dead_) return;
  if (no_streams()) {
    if (idle_deadline_ == Clock::time_point::max() && cfg_) {
      idle_deadline_ = Clock::now() + cfg_->idle_timeout;
      note_deadline(idle_deadline_);
    }
    if (goaway_ == H2Goaway::notice) send_final_goaway();  // nothing in flight: no need to wait
    // A connection that stays idle parks (a busy one is idle for a moment after each batch of
    // responses); with many connections on the worker, at once, as HTTP/1.1 ones do.
    if (!park_wanted_ && goaway_ == H2Goaway::none) {
      if (worker_.many_connections()) {
        prepare_park();
      } else if (a().trim_deadline == Clock::time_point::max()) {
        a().trim_deadline = Clock::now() + kParkAfter;
        note_deadline(a().trim_deadline);
      }
    }
    if (!on_idle_list_ && goaway_ == H2Goaway::none) {
      worker_.mark_idle(*this);
      on_idle_list_ = true;
    }
  } else {
    idle_deadline_ = Clock::time_point::max();
    a().trim_deadline = Clock::time_point::max();
    park_wanted_ = false;
    if (on_idle_list_) {
      worker_.mark_busy(*this);
      on_idle_list_ = false;
      note_deadline(Clock::now() + kDrainTick);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GOAWAY
// ---------------------------------------------------------------------------------------------

void H2Connection::close_if_idle() {
  // Unlinked from the idle list by the worker (drain, or the connection limit).
  on_idle_list_ = false;
  if (!ensure_session()) return;
  start_graceful(worker_.draining() ? "drain" : "connection limit");
}

void H2Connection::snapshot_changed() {
  if (goaway_ != H2Goaway::none || !snapshot_) return;
  const ListenerRuntime* lr = worker_.snapshot()->find_listener(listener_);
  const ListenerRuntime* mine = snapshot_->find_listener(listener_);
  if (lr && mine && *lr->config == *mine->config) {
    // Same listener: follow the new snapshot, so a long-lived connection does not pin old ones.
    snapshot_ = worker_.snapshot();
    cfg_ = &lr->config->http2;
    return;
  }
  if (!ensure_session()) return;
  start_graceful("listener changed by reload");
}

void H2Connection::start_graceful(std::string_view why) {
  if (dead_ || !session_ || goaway_ != H2Goaway::none) return;
  spdlog::debug("h2 client {}: graceful GOAWAY ({})", remote_, why);
  worker_.counters().h2_goaways.inc();
  if (no_streams()) {
    send_final_goaway();
    return;
  }
  // RFC 9113 §6.8: a GOAWAY with 2^31-1 first, the final one after at least one round trip, so
  // requests already on their way are not lost.
  nghttp2_submit_shutdown_notice(session_);
  goaway_ = H2Goaway::notice;
  a().goaway_deadline = Clock::now() + kGoawayGrace;
  note_deadline(a().goaway_deadline);
  wake();
}

void H2Connection::send_final_goaway() {
  if (dead_ || !session_ || goaway_ == H2Goaway::final || goaway_ == H2Goaway::calm) return;
  goaway_ = H2Goaway::final;
  a().goaway_deadline = Clock::time_point::max();
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  wake();
}

void H2Connection::calm_down(uint32_t code, Counter WorkerCounters::*counter, std::string_view why) {
  if (goaway_ == H2Goaway::calm) return;
  if (counter) (worker_.counters().*counter).inc();
  spdlog::debug("h2 client {}: {}: GOAWAY {}", remote_, why, nghttp2_http2_strerror(code));
  calm_code_ = code;
  goaway_ = H2Goaway::calm;
  if (session_) nghttp2_session_terminate_session(session_, code);
  wake();
}

bool H2Connection::count_control_frame() {
  if (++control_in_window_ <= cfg_->max_control_frames_per_second) return true;
  calm_down(NGHTTP2_ENHANCE_YOUR_CALM, &WorkerCounters::h2_control_floods, "control frame flood");
  return false;
}

// ---------------------------------------------------------------------------------------------
// Stream pipelines
// ---------------------------------------------------------------------------------------------

void H2Connection::start_pipeline(H2Stream* s, int status, std::string_view code, std::string_view message) {
  s->start_status_ = status;
  s->start_code_ = code;
  s->start_message_ = message;
  s->pipeline_running_ = true;
  ++a().pipelines;
  if (s->start_event_.waiting()) {
    // A recycled object: its loop waits for this request. It runs now, inside the nghttp2
    // callback, up to its first suspension, exactly as a freshly spawned coroutine would.
    s->start_event_.resume_now();
  } else {
    // Counted before the spawn: run() must wait for this loop even if its start were deferred.
    ++a().loops;
    s->has_loop_ = true;
    boost::asio::co_spawn(worker_.io(), stream_loop(s), boost::asio::detached);
  }
}

boost::asio::awaitable<void> H2Connection::stream_loop(H2Stream* s) {
  for (;;) {
    RequestContext& ctx = *s->ctx_;
    if (s->closed_) {
      ctx.error = "client_reset";  // reset before the pipeline got to run: nothing to do
    } else if (s->start_status_ != 0) {
      co_await respond_error(ctx, *s, s->start_status_, s->start_code_, s->start_message_);
    } else {
      co_await run_request(worker_, ctx, *s);
    }
    finish_pipeline(s);
    if (s->retire_ || dead_) break;
    co_await s->start_event_.wait();  // recycled: the next request on this object, or retired
    if (s->retire_) break;
  }
  s->has_loop_ = false;
  // Retired: nobody else holds it. (Otherwise the connection is dead with the stream still
  // listed, and its destructor deletes it.)
  if (s->retire_) delete s;
  --a().loops;
  if (dead_ && a().loops == 0) a().all_done.signal(worker_.io());
  if (!dead_ && a().loops == 0 && park_wanted_) wake();  // the loop may park now
}

void H2Connection::finish_pipeline(H2Stream* s) {
  RequestContext& ctx = *s->ctx_;
  // A response the pipeline did not finish (upstream failure mid-body, client timeout) must
  // look broken to the client: reset. A finished one with the request body still coming in
  // tells the client to stop sending (RFC 9113 §8.1).
  if (!s->closed_ && !dead_) {
    if (!s->response_complete()) {
      reset_stream(s, s->timed_out_ ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
    } else if (!s->remote_closed_) {
      reset_stream(s, NGHTTP2_NO_ERROR);
    }
  }
  s->release_taken();
  s->disarm();
  if (!s->owned_) {
    s->pieces_ = {};  // they pointed into the finished pipeline's buffers
    s->piece_ = s->piece_off_ = 0;
  }
  s->trailers_ = {};
  s->trailers_pending_ = false;
  worker_.release_context(&ctx);
  s->ctx_ = nullptr;
  s->pipeline_running_ = false;
  --a().pipelines;
  maybe_release(s);
  if (dead_) return;
  if (worker_.draining() && goaway_ == H2Goaway::none) start_graceful("drain");
  update_idle();
  wake();
}

void H2Connection::retire(H2Stream* s) {
  if (!s->has_loop_) {
    delete s;
    return;
  }
  // Its loop deletes it: now if it waits, or when it finishes the pipeline it is in.
  s->retire_ = true;
  s->start_event_.signal(worker_.io());
}

void H2Connection::reset_stream(H2Stream* s, uint32_t error_code) {
  if (s->closed_ || s->reset_submitted_ || dead_) return;
  s->reset_submitted_ = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id_, error_code);
  wake();
}

H2Stream* H2Connection::new_stream(int32_t id) {
  H2Stream* raw;
  if (!a().free_streams.empty()) {
    raw = a().free_streams.back();
    a().free_streams.pop_back();
  } else {
    raw = new H2Stream(*this);
  }
  raw->reset_for(id, acquire_snapshot());
  a().live.push_back(*raw);
  ++a().live_count;
  update_idle();
  return raw;
}

const Snapshot* H2Connection::acquire_snapshot() {
  const auto& current = worker_.snapshot();
  if (a().snapshots.empty() || a().snapshots.back().snapshot != current) {
    if (!a().snapshots.empty() && a().snapshots.back().streams == 0) {
      a().snapshots.back().snapshot = current;  // a reload happened: the old one is unused
    } else {
      a().snapshots.push_back({current, 0});
    }
  }
  ++a().snapshots.back().streams;
  return current.get();
}

void H2Connection::release_snapshot(const Snapshot* snapshot) {
  for (size_t i = 0; i < a().snapshots.size(); ++i) {
    if (a().snapshots[i].snapshot.get() != snapshot) continue;
    // The newest stays (the next stream most likely uses it); older ones go with their last stream.
    if (--a().snapshots[i].streams == 0 && i + 1 < a().snapshots.size()) a().snapshots.erase(a().snapshots.begin() + i);
    return;
  }
}

void H2Connection::stream_closed(H2Stream* s, uint32_t error_code) {
  if (s->closed_) return;
  s->closed_ = true;
  s->close_code_ = error_code;
  // DATA nobody will read: give its window back to the connection (the stream's is gone).
  if (!s->body_in_.empty()) {
    if (!dead_) nghttp2_session_consume(session_, s->id_, s->body_in_.size());
    s->body_in_.clear();
  }
  s->read_event_.signal(worker_.io(), boost::asio::error::connection_reset);
  s->send_event_.signal(worker_.io(), boost::asio::error::connection_reset);
  // Reset (or lost with the connection) before its response was complete: the client has given
  // up, so the upstream request is cut short too. That is what keeps a stream of resets (each
  // within the Rapid Reset limit) from costing the upstreams a full request each.
  if (s->ctx_ && s->pipeline_running_ && !s->response_complete()) s->ctx_->abort_upstream();
  maybe_release(s);
}

void H2Connection::maybe_release(H2Stream* s) {
  if (!s->closed_ || s->pipeline_running_) return;
  s->StreamHook::unlink();
  --a().live_count;
  s->drop_owned();
  release_snapshot(s->snapshot_);
  s->snapshot_ = nullptr;
  // Warm stream objects for a busy connection's next requests; big body buffers are not kept warm.
  if (s->body_in_.capacity() > kKeepBufferCapacity) std::string().swap(s->body_in_);
  if (s->body_out_.capacity() > kKeepBufferCapacity) std::string().swap(s->body_out_);
  if (s->owned_body_.capacity() > kKeepBufferCapacity) std::string().swap(s->owned_body_);
  if (!dead_ && a().free_streams.size() < kFreeStreams && s->arena_.capacity() <= kKeepBufferCapacity) {
    a().free_streams.push_back(s);
  } else {
    retire(s);
  }
  if (!dead_) update_idle();
}

}  // namespace turnpike::proxy
