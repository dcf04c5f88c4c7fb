// Worker threads: accept loops, the periodic timeout sweep, memory trimming, reload and drain.
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

#include "downstream/h1/downstream_h1.h"
#include "downstream/h1/proxy_accept.h"
#include "turnpike/common/coarse_clock.h"
#include "turnpike/common/small_blocks.h"
#include "turnpike/lua/mirror.h"

namespace turnpike::proxy {

namespace {
constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
constexpr auto kSweepInterval = std::chrono::milliseconds(100);
// Closing a listener: at most this many connections waiting in its backlog are still served.
constexpr size_t kMaxBacklogOnClose = 4096;
// Memory kept for reuse is trimmed every this many sweeps (500 ms): what went unused for a whole
// interval is given back half at a time, so a spike's memory is returned within seconds while a
// steady load, or one that comes back within half a second, keeps what it uses. (At 1 s, what
// the idle upstream connections of a spike held when their idle timeout closed them took ~5 s
// to reach the system.)
constexpr unsigned kTrimEvery = 5;
// glibc keeps freed memory inside its heaps until asked: once this much has been freed since it
// was last asked, malloc_trim gives the free pages back (it takes the arena locks: not per request).
constexpr size_t kMallocTrimAfter = 1 << 20;
// Nor is what a closed connection freed counted: once this many fewer sockets (client connections
// and upstream ones) are open than at the most since the last malloc_trim, it is called too. That
// is what gives back the pages of the idle upstream connections that close a keepalive idle
// timeout after a spike.
constexpr size_t kMallocTrimSocketDrop = 64;
// And once the give-back has run its course (a trim period frees less than kMallocTrimQuiet)
// with at least kMallocTrimSettled given back since the last malloc_trim. The last blocks the
// caches give back after a spike are scattered over the spike's heap, each often the only live
// thing on its pages: 135 KB of them, freed after the last 1-MiB malloc_trim, kept 1.8 MiB
// resident. (An idle worker's own give-back is ~128 bytes a period: a malloc_trim every minute.)
constexpr size_t kMallocTrimQuiet = 4 * 1024;
constexpr size_t kMallocTrimSettled = 16 * 1024;
#if defined(BOOST_ASIO_HAS_EPOLL)
// The reactor keeps one of these per socket ever registered, for good: the small-block cache
// gives its size class slabs of their own so they do not pin the heap (small_blocks.h).
constexpr size_t kReactorRecord = sizeof(boost::asio::detail::epoll_reactor::descriptor_state);
static_assert(kReactorRecord > small_blocks::kLongLivedSize - small_blocks::kClassSize &&
                  kReactorRecord <= small_blocks::kLongLivedSize,
              "small_blocks::kLongLivedSize must be the class of Asio's descriptor_state");
#endif
}  // namespace

WorkerThread::WorkerThread(unsigned index, std::shared_ptr<const Snapshot> snapshot, lua::SharedDicts* dicts)
    : DownstreamWorker(index, std::move(snapshot), dicts), sweep_timer_(io()) {}

WorkerThread::~WorkerThread() { join(); }

void WorkerThread::start(std::vector<std::pair<std::string, int>> listen_fds) {
  thread_ = std::thread([this, fds = std::move(listen_fds)]() mutable {
    lua::bind_mirror_io_context(&io());  // turnpike.mirror's queues send on this worker's loop
    lua::bind_plugin_metrics_shard(plugin_metrics());  // turnpike.metrics records here
    plugins().adopt(snapshot());  // the Lua VM is made on the thread that uses it
    open_acceptors(std::move(fds));
    schedule_sweep();
    io().run();
    // Everything has unwound; free what is left while the io_context still exists.
    acceptors_.clear();
    release_data_path();
    finished_ = true;
  });
}

void WorkerThread::join() {
  if (thread_.joinable()) thread_.join();
}

void WorkerThread::post_snapshot(std::shared_ptr<const Snapshot> snapshot, std::vector<std::pair<std::string, int>> new_fds) {
  boost::asio::post(io(), [this, snapshot = std::move(snapshot), fds = std::move(new_fds)]() mutable {
    apply_snapshot(std::move(snapshot), std::move(fds));
  });
}

void WorkerThread::post_drain() {
  boost::asio::post(io(), [this] { start_drain(); });
}

void WorkerThread::force_stop() {
  boost::asio::post(io(), [this] {
    set_stopping();
    start_drain();
    expire_connections();
    sweep_pools(Clock::time_point::max());
  });
}

void WorkerThread::open_acceptors(std::vector<std::pair<std::string, int>> fds) {
  for (auto& [name, fd] : fds) {
    auto acc = std::make_unique<Acceptor>(Acceptor{name, tcp::acceptor(io()), false});
    boost::system::error_code ec;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    acc->acceptor.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
      spdlog::error("worker {}: listener {}: {}", index(), name, ec.message());
      ::close(fd);
      continue;
    }
    Acceptor* raw = acc.get();
    acceptors_.push_back(std::move(acc));
    boost::asio::co_spawn(io(), accept_loop(raw), boost::asio::detached);
  }
}

boost::asio::awaitable<void> WorkerThread::accept_loop(Acceptor* acc) {
  for (;;) {
    auto [ec, socket] = co_await acc->acceptor.async_accept(nothrow);
    // Accepted before the listener closed (drain, reload): the client is connected, serve it.
    if (!ec) admit(std::move(socket), acc->name);
    if (acc->closing || draining() || ec == boost::asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors or memory: back off briefly instead of spinning.
      spdlog::warn("worker {}: accept on {}: {}", index(), acc->name, ec.message());
      boost::asio::steady_timer t(io(), std::chrono::milliseconds(50));
      co_await t.async_wait(nothrow);
    }
  }
}

void WorkerThread::admit(tcp::socket socket, const std::string& listener) {
  counters().connections_accepted.inc();
  if (metrics().enabled()) {
    if (const ListenerRuntime* l = snapshot()->find_listener(listener)) metrics().accepted(l->series);
  }
  if (!make_room_for_connection()) {
    counters().connections_rejected.inc();
    spdlog::debug("worker {}: connection limit reached, refusing a connection", index());
    return;  // the socket closes as it goes out of scope
  }
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  // A listener behind a balancer that speaks the PROXY protocol: its header first.
  const ListenerRuntime* lr = snapshot()->find_listener(listener);
  if (lr && lr->config->proxy_protocol) {
    read_proxy_header(*this, std::move(socket), listener);  // then serve_client
    return;
  }
  serve_client(*this, std::move(socket), listener);
}

void WorkerThread::close_acceptor(Acceptor& acc) {
  acc.closing = true;
  // Connections the kernel has completed but we have not accepted yet would be reset by the
  // close although their clients may have sent a request already: take them first (bounded).
  boost::system::error_code ec;
  acc.acceptor.non_blocking(true, ec);
  for (size_t i = 0; i < kMaxBacklogOnClose && !ec; ++i) {
    tcp::socket socket(io());
    acc.acceptor.accept(socket, ec);
    if (!ec) admit(std::move(socket), acc.name);
  }
  acc.acceptor.close(ec);
}

void WorkerThread::apply_snapshot(std::shared_ptr<const Snapshot> snapshot, std::vector<std::pair<std::string, int>> fds) {
  // Listeners: close the ones that are gone or replaced, then open the new sockets.
  for (auto& acc : acceptors_) {
    bool keep = snapshot->find_listener(acc->name) != nullptr;
    for (auto& [name, fd] : fds) keep = keep && name != acc->name;
    if (!keep && !acc->closing) close_acceptor(*acc);
  }
  open_acceptors(std::move(fds));

  adopt_snapshot(std::move(snapshot));
  connections_snapshot_changed();
}

void WorkerThread::start_drain() {
  if (draining()) return;
  for (auto& acc : acceptors_) {
    if (!acc->closing) close_acceptor(*acc);
  }
  drain_connections();
  maybe_finish_drain();
}

void WorkerThread::maybe_finish_drain() {
  if (connection_count() != 0) return;
  close_idle_pools();
  lua::stop_mirrors(io());
  plugins().stop_timers();  // a periodic timer would keep the loop running  // waiting mirror copies would hold the loop; those in flight end by their timeout
  sweep_timer_.cancel();
}

void WorkerThread::schedule_sweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    sweep();
    if (!(draining() && connection_count() == 0)) schedule_sweep();
  });
}

void WorkerThread::trim_memory() {
  size_t freed = buffers().trim() * BufferPool::kBlockSize;
  freed += trim_contexts();
  freed += small_blocks::trim_thread_cache();
  freed_since_malloc_trim_ += freed;
  const size_t sockets = open_sockets();
  sockets_high_water_ = std::max(sockets_high_water_, sockets);
  const bool settled = freed < kMallocTrimQuiet && freed_since_malloc_trim_ >= kMallocTrimSettled;
  if (freed_since_malloc_trim_ >= kMallocTrimAfter || sockets_high_water_ - sockets >= kMallocTrimSocketDrop || settled) {
    ::malloc_trim(0);
    spdlog::debug("worker {}: malloc_trim after {} KiB given back ({} this second), {} sockets open ({} at most)",
                  index(), freed_since_malloc_trim_ >> 10, freed >> 10, sockets, sockets_high_water_);
    freed_since_malloc_trim_ = 0;
    sockets_high_water_ = sockets;
  }
}

void WorkerThread::sweep() {
  if (plugins().size() > 1) plugins().collect();  // plugin instances of snapshots now unused
  if (++sweeps_since_trim_ >= kTrimEvery) {
    sweeps_since_trim_ = 0;
    trim_memory();
  }
  auto now = Clock::now();
  sweep_connections(now);
  sweep_pools(now);
}

}  // namespace turnpike::proxy
