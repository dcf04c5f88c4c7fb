// Worker threads: accept loops, connection bookkeeping (limits, idle list, drain), the periodic
// timeout sweep, per-worker upstream pools and request-context recycling.
//
// Timeouts use one sweep every 100 ms over this worker's connections instead of a timer per
// operation: arming a timeout is a store, not a timer-queue update plus a cancelled handler.
#include "worker.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <malloc.h>
#include <spdlog/spdlog.h>

#include "downstream_h1.h"
#include "turnpike/common/coarse_clock.h"
#include "turnpike/common/small_blocks.h"
#include "turnpike/lua/mirror.h"

namespace turnpike::proxy {

namespace {
constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
constexpr auto kSweepInterval = std::chrono::milliseconds(100);
// Closing a listener: at most this many connections waiting in its backlog are still served.
constexpr size_t kMaxBacklogOnClose = 4096;
// Memory kept for reuse is trimmed every this many sweeps (1 s): what went unused for a whole
// interval is given back half at a time, so a spike's memory is returned within seconds while a
// steady load, or one that comes back within a second, keeps what it uses.
constexpr unsigned kTrimEvery = 10;
// Request contexts a worker keeps however long it has been idle.
constexpr size_t kContextFloor = 16;
// glibc keeps freed memory inside its heaps until asked: once this much has been freed since it
// was last asked, malloc_trim gives the free pages back (it takes the arena locks: not per request).
constexpr size_t kMallocTrimAfter = 1 << 20;
// Nor is what a closed connection freed counted: once this many fewer sockets (client connections
// and upstream ones) are open than at the most since the last malloc_trim, it is called too. That
// is what gives back the pages of the idle upstream connections that close a keepalive idle
// timeout after a spike.
constexpr size_t kMallocTrimSocketDrop = 64;
#if defined(BOOST_ASIO_HAS_EPOLL)
// The reactor keeps one of these per socket ever registered, for good: the small-block cache
// gives its size class slabs of their own so they do not pin the heap (small_blocks.h).
constexpr size_t kReactorRecord = sizeof(boost::asio::detail::epoll_reactor::descriptor_state);
static_assert(kReactorRecord > small_blocks::kLongLivedSize - small_blocks::kClassSize &&
                  kReactorRecord <= small_blocks::kLongLivedSize,
              "small_blocks::kLongLivedSize must be the class of Asio's descriptor_state");
#endif

// Pools survive a reload when what they connect to and how did not change (file lines may).
bool same_upstream(const config::UpstreamConfig& a, const config::UpstreamConfig& b) {
  return a == b;  // every field but the lines (config.h: UpstreamConfig's identity)
}
}  // namespace

Worker::Worker(unsigned index, std::shared_ptr<const Snapshot> snapshot, lua::SharedDicts* dicts)
    : index_(index),
      ioc_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      snapshot_(std::move(snapshot)),
      plugins_(index, dicts, ioc_),
      sweep_timer_(ioc_) {
  for (const auto& up : snapshot_->upstreams) {
    pools_.push_back(make_pool(up));
  }
}

Worker::~Worker() { join(); }

std::unique_ptr<upstream::UpstreamPool> Worker::make_pool(std::shared_ptr<const upstream::ResolvedUpstream> up) {
  upstream::H2UpstreamCounters h2;
  h2.connections_opened = &counters_.h2_upstream_connections;
  h2.streams_opened = &counters_.h2_upstream_streams;
  h2.goaways_received = &counters_.h2_upstream_goaways;
  h2.streams_reset = &counters_.h2_upstream_resets;
  h2.connections_lost = &counters_.h2_upstream_lost;
  return std::make_unique<upstream::UpstreamPool>(ioc_, buffers_, std::move(up), h2);
}

void Worker::start(std::vector<std::pair<std::string, int>> listen_fds) {
  thread_ = std::thread([this, fds = std::move(listen_fds)]() mutable {
    lua::bind_mirror_io_context(&ioc_);  // turnpike.mirror's queues send on this worker's loop
    plugins_.adopt(snapshot_);  // the Lua VM is made on the thread that uses it
    open_acceptors(std::move(fds));
    schedule_sweep();
    ioc_.run();
    // Everything has unwound; free what is left while the io_context still exists.
    acceptors_.clear();
    pools_.clear();
    retired_pools_.clear();
    ioc_.restart();
    ioc_.poll();
    free_contexts_.clear();
    plugins_.clear();
    finished_ = true;
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::post_snapshot(std::shared_ptr<const Snapshot> snapshot, std::vector<std::pair<std::string, int>> new_fds) {
  boost::asio::post(ioc_, [this, snapshot = std::move(snapshot), fds = std::move(new_fds)]() mutable {
    apply_snapshot(std::move(snapshot), std::move(fds));
  });
}

void Worker::post_drain() {
  boost::asio::post(ioc_, [this] { start_drain(); });
}

void Worker::force_stop() {
  boost::asio::post(ioc_, [this] {
    stopping_ = true;
    start_drain();
    for (auto& c : connections_) c.expire();
    for (auto& p : pools_) p->sweep(Clock::time_point::max());
    for (auto& p : retired_pools_) p->sweep(Clock::time_point::max());
  });
}

void Worker::open_acceptors(std::vector<std::pair<std::string, int>> fds) {
  for (auto& [name, fd] : fds) {
    auto acc = std::make_unique<Acceptor>(Acceptor{name, tcp::acceptor(ioc_), false});
    boost::system::error_code ec;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    acc->acceptor.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
      spdlog::error("worker {}: listener {}: {}", index_, name, ec.message());
      ::close(fd);
      continue;
    }
    Acceptor* raw = acc.get();
    acceptors_.push_back(std::move(acc));
    boost::asio::co_spawn(ioc_, accept_loop(raw), boost::asio::detached);
  }
}

boost::asio::awaitable<void> Worker::accept_loop(Acceptor* acc) {
  for (;;) {
    auto [ec, socket] = co_await acc->acceptor.async_accept(nothrow);
    // Accepted before the listener closed (drain, reload): the client is connected, serve it.
    if (!ec) admit(std::move(socket), acc->name);
    if (acc->closing || draining_ || ec == boost::asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors or memory: back off briefly instead of spinning.
      spdlog::warn("worker {}: accept on {}: {}", index_, acc->name, ec.message());
      boost::asio::steady_timer t(ioc_, std::chrono::milliseconds(50));
      co_await t.async_wait(nothrow);
    }
  }
}

void Worker::admit(tcp::socket socket, const std::string& listener) {
  counters_.connections_accepted.inc();
  if (!make_room_for_connection()) {
    counters_.connections_rejected.inc();
    spdlog::debug("worker {}: connection limit reached, refusing a connection", index_);
    return;  // the socket closes as it goes out of scope
  }
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  serve_connection(std::move(socket), listener);
}

void Worker::close_acceptor(Acceptor& acc) {
  acc.closing = true;
  // Connections the kernel has completed but we have not accepted yet would be reset by the
  // close although their clients may have sent a request already: take them first (bounded).
  boost::system::error_code ec;
  acc.acceptor.non_blocking(true, ec);
  for (size_t i = 0; i < kMaxBacklogOnClose && !ec; ++i) {
    tcp::socket socket(ioc_);
    acc.acceptor.accept(socket, ec);
    if (!ec) admit(std::move(socket), acc.name);
  }
  acc.acceptor.close(ec);
}

std::string peer_text(const tcp::socket& socket, size_t& ip_len) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) {
    ip_len = 0;
    return {};
  }
  std::string text = ep.address().to_string();
  ip_len = text.size();
  text.push_back(':');
  text.append(std::to_string(ep.port()));
  return text;
}

void Worker::serve_connection(tcp::socket socket, const std::string& listener) {
  const ListenerRuntime* lr = snapshot_->find_listener(listener);
  if (!lr) return;  // removed by a reload that this accept raced with
  if (!lr->tls) {
    auto conn = std::make_unique<DownstreamConnection>(*this, std::make_unique<Transport>(std::move(socket)), listener);
    DownstreamConnection::park(std::move(conn));
    return;
  }
  SSL* ssl = lr->tls->new_session();
  if (!ssl) {
    counters_.tls_handshake_failures.inc();
    return;
  }
  auto conn = std::make_unique<DownstreamConnection>(*this, std::make_unique<Transport>(std::move(socket), ssl), listener);
  boost::asio::co_spawn(ioc_, DownstreamConnection::start_tls(std::move(conn), lr->tls->config().handshake_timeout),
                        boost::asio::detached);
}

bool Worker::make_room_for_connection() {
  const auto max = snapshot_->config->limits.max_connections_per_worker;
  if (connection_count_ < max) return true;
  // At the limit the oldest idle keepalive connection makes way for the new one.
  if (!idle_.empty()) {
    ClientConnection& oldest = idle_.front();
    oldest.IdleHook::unlink();
    oldest.close_if_idle();
    counters_.idle_closed_for_limit.inc();
    spdlog::debug("worker {}: connection limit reached, closed an idle connection", index_);
    return true;
  }
  // Then the connection that has waited longest for the rest of a request head (slowloris), if
  // that is longer than a head takes on any working link: else a few hundred such connections
  // would lock every new client out until header_timeout.
  if (!partial_heads_.empty() && coarse_now() - partial_heads_.front().head_since() >= kSlowHeadGrace) {
    ClientConnection& slowest = partial_heads_.front();
    slowest.HeadHook::unlink();
    slowest.close_slow();
    counters_.slow_closed_for_limit.inc();
    spdlog::debug("worker {}: connection limit reached, closed a connection stuck in a request head", index_);
    return true;
  }
  return false;
}

void Worker::add_connection(ClientConnection& c) {
  connections_.push_back(c);
  ++connection_count_;
  counters_.connections_active.inc();
}

void Worker::connection_closed(ClientConnection& c) {
  c.DownstreamHook::unlink();
  c.IdleHook::unlink();
  --connection_count_;
  counters_.connections_active.dec();
  if (draining_) maybe_finish_drain();
}

void Worker::mark_idle(ClientConnection& c) { idle_.push_back(c); }
void Worker::mark_partial_head(ClientConnection& c) {
  c.head_since_ = coarse_now();
  partial_heads_.push_back(c);
}
void Worker::mark_busy(ClientConnection& c) { c.IdleHook::unlink(); }

RequestContext* Worker::acquire_context() {
  if (free_contexts_.empty()) return new RequestContext();
  RequestContext* ctx = free_contexts_.back().release();
  free_contexts_.pop_back();
  contexts_low_water_ = std::min(contexts_low_water_, free_contexts_.size());
  return ctx;
}

void Worker::release_context(RequestContext* ctx) {
  ctx->reset();
  free_contexts_.emplace_back(ctx);
}

upstream::UpstreamPool& Worker::pool_for(const Snapshot& snapshot, size_t upstream_index) {
  if (&snapshot == snapshot_.get()) return *pools_[upstream_index];
  // The request started before a reload: find the pool that serves its upstream now.
  const auto& wanted = snapshot.upstreams[upstream_index];
  for (auto* list : {&pools_, &retired_pools_}) {
    for (auto& p : *list) {
      if (&p->upstream() == wanted.get() || same_upstream(p->config(), *wanted->config)) return *p;
    }
  }
  retired_pools_.push_back(make_pool(wanted));
  return *retired_pools_.back();
}

void Worker::apply_snapshot(std::shared_ptr<const Snapshot> snapshot, std::vector<std::pair<std::string, int>> fds) {
  // Listeners: close the ones that are gone or replaced, then open the new sockets.
  for (auto& acc : acceptors_) {
    bool keep = snapshot->find_listener(acc->name) != nullptr;
    for (auto& [name, fd] : fds) keep = keep && name != acc->name;
    if (!keep && !acc->closing) close_acceptor(*acc);
  }
  open_acceptors(std::move(fds));

  // Pools: an unchanged upstream keeps its pool (and its warm connections).
  std::vector<std::unique_ptr<upstream::UpstreamPool>> next;
  for (const auto& up : snapshot->upstreams) {
    std::unique_ptr<upstream::UpstreamPool> found;
    for (auto& p : pools_) {
      if (p && same_upstream(p->config(), *up->config)) {
        found = std::move(p);
        break;
      }
    }
    if (found) {
      found->adopt(up);
    } else {
      found = make_pool(up);
      // Only its nodes changed (a rolling update): the parked connections of the nodes that stay move over.
      for (auto& p : pools_) {
        if (p && upstream::UpstreamPool::same_but_nodes(p->config(), *up->config)) {
          found->take_idle_from(*p);
          break;
        }
      }
    }
    next.push_back(std::move(found));
  }
  for (auto& p : pools_) {
    if (!p) continue;
    p->close_idle();
    if (p->active() > 0) retired_pools_.push_back(std::move(p));
  }
  pools_ = std::move(next);
  snapshot_ = std::move(snapshot);
  plugins_.adopt(snapshot_);
  for (auto it = connections_.begin(); it != connections_.end();) (it++)->snapshot_changed();
}

void Worker::start_drain() {
  if (draining_) return;
  draining_ = true;
  for (auto& acc : acceptors_) {
    if (!acc->closing) close_acceptor(*acc);
  }
  // Idle connections close after a short grace in which a request that arrives is still served
  // (DownstreamConnection::close_if_idle); HTTP/2 ones send GOAWAY.
  while (!idle_.empty()) {
    ClientConnection& c = idle_.front();
    c.IdleHook::unlink();
    c.close_if_idle();
  }
  maybe_finish_drain();
}

void Worker::maybe_finish_drain() {
  if (connection_count_ != 0) return;
  // Retired pools too: a connection parked in one after the reload would otherwise keep the
  // io_context (and the process) alive until the drain timeout.
  for (auto& p : pools_) p->close_idle();
  for (auto& p : retired_pools_) p->close_idle();
  lua::stop_mirrors(ioc_);  // waiting mirror copies would hold the loop; those in flight end by their timeout
  sweep_timer_.cancel();
}

void Worker::schedule_sweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    sweep();
    if (!(draining_ && connection_count_ == 0)) schedule_sweep();
  });
}

void Worker::trim_memory() {
  size_t freed = buffers_.trim() * BufferPool::kBlockSize;
  // Contexts the same way as the pool's blocks: half of those unused since the last trim, the
  // ones released longest ago (the front of the LIFO list).
  const size_t unused = contexts_low_water_ > kContextFloor ? contexts_low_water_ - kContextFloor : 0;
  const size_t n = (unused + 1) / 2;
  free_contexts_.erase(free_contexts_.begin(), free_contexts_.begin() + static_cast<std::ptrdiff_t>(n));
  freed += n * sizeof(RequestContext);  // and what their strings and vectors held
  contexts_low_water_ = free_contexts_.size();
  freed += small_blocks::trim_thread_cache();
  freed_since_malloc_trim_ += freed;
  const size_t sockets = open_sockets();
  sockets_high_water_ = std::max(sockets_high_water_, sockets);
  if (freed_since_malloc_trim_ >= kMallocTrimAfter || sockets_high_water_ - sockets >= kMallocTrimSocketDrop) {
    ::malloc_trim(0);
    freed_since_malloc_trim_ = 0;
    sockets_high_water_ = sockets;
  }
}

size_t Worker::open_sockets() const {
  size_t n = connection_count_;
  for (const auto& p : pools_) n += p->active() + p->idle();
  for (const auto& p : retired_pools_) n += p->active() + p->idle();
  return n;
}

void Worker::sweep() {
  if (plugins_.size() > 1) plugins_.collect();  // plugin instances of snapshots now unused
  if (++sweeps_since_trim_ >= kTrimEvery) {
    sweeps_since_trim_ = 0;
    trim_memory();
  }
  auto now = Clock::now();
  if (many_connections()) {
    for (auto& c : idle_) c.request_park();
  }
  for (auto it = connections_.begin(); it != connections_.end();) {
    ClientConnection& c = *it++;
    if (c.deadline() <= now) c.expire();
  }
  for (auto& p : pools_) p->sweep(now);
  for (auto it = retired_pools_.begin(); it != retired_pools_.end();) {
    (*it)->sweep(now);
    if ((*it)->active() == 0) {
      it = retired_pools_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace turnpike::proxy
