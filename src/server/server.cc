// Process lifecycle: start, reload (build whole, validate, swap atomically, or keep the old),
// drain. Runs on the main thread; workers are reached only by posting to them.
#include "turnpike/server/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "admin.h"
#include "metrics_export.h"
#include "node_files.h"
#include "turnpike/log/log.h"
#include "turnpike/lua/limiter.h"
#include "turnpike/metrics/series.h"
#include "systemd_notify.h"
#include "upgrade.h"
#include "turnpike/common/version.h"
#include "turnpike/proxy/readiness.h"
#include "turnpike/proxy/snapshot.h"
#include "turnpike/tls/edge_wait.h"
#include "turnpike/upstream/checker.h"
#include "turnpike/upstream/discovery.h"
#include "worker.h"

namespace turnpike::proxy {

namespace {

constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
// trim_soon(): the free pages a reload left go back this long after the first reload of a burst.
constexpr auto kTrimAfterReload = std::chrono::seconds(2);

// One bound listener: the address it really got (port 0 resolved) and its config.
struct BoundListener {
  config::ListenerConfig config;
  std::string bound;  // "127.0.0.1:8080"
  uint16_t port = 0;
  std::vector<int> fds;  // its listening sockets, held by the workers (handed over in an upgrade)
};

std::string endpoint_text(const boost::asio::ip::address& addr, uint16_t port) {
  return (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" + std::to_string(port);
}

// Why a listening socket could not be had, and what to do about it.
std::string listen_failure(const boost::asio::ip::address& addr, uint16_t port, int err) {
  std::string out = "cannot listen on " + endpoint_text(addr, port) + ": " + std::strerror(err);
  if (err == EACCES && port < 1024) {
    out += " (ports below 1024 need the CAP_NET_BIND_SERVICE capability: AmbientCapabilities=CAP_NET_BIND_SERVICE "
           "in the systemd unit, or setcap cap_net_bind_service=+ep on the binary; or use a port >= 1024)";
  } else if (err == EADDRINUSE) {
    out += " (another process, perhaps another turnpike, listens on " + endpoint_text(addr, port) +
           ": stop it or choose another port)";
  } else if (err == EADDRNOTAVAIL) {
    out += " (no interface of this host has the address " + addr.to_string() + ")";
  }
  return out;
}

// SO_REUSEPORT lets any socket of the same user join a port, so a second turnpike started on a
// port that a running one serves would quietly share its connections. Before joining a port with
// SO_REUSEPORT, bind it once without: that fails (EADDRINUSE) when anyone listens there already.
// SO_REUSEADDR is kept, so a restart still binds past connections left in TIME_WAIT.
int probe_port(const tcp::endpoint& ep) {
  int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int one = 1;
  int err = 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      ::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0) {
    err = errno;
  }
  ::close(fd);
  return err;
}

// Opens one SO_REUSEPORT listening socket per worker for a listener. With port 0 the first
// socket picks the port and the others join it. `ours` says that this process already listens on
// the address and port (a reload rebinding a changed listener), so joining it is expected.
bool open_listener(const config::ListenerConfig& l, unsigned workers, bool ours, std::vector<int>& fds,
                   BoundListener& bound, std::string& error) {
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(l.address, ec);
  if (ec) {
    error = "invalid address " + l.address;
    return false;
  }
  uint16_t port = l.port;
  if (port != 0 && !ours) {
    if (int err = probe_port(tcp::endpoint(addr, port)); err != 0) {
      error = listen_failure(addr, port, err);
      return false;
    }
  }
  for (unsigned w = 0; w < workers; ++w) {
    tcp::endpoint ep(addr, port);
    int fd = ::socket(addr.is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        ::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0 || ::listen(fd, l.backlog) != 0) {
      error = listen_failure(addr, port, errno);
      if (fd >= 0) ::close(fd);
      for (int f : fds) ::close(f);
      fds.clear();
      return false;
    }
    if (port == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    }
    fds.push_back(fd);
  }
  bound.config = l;
  bound.port = port;
  bound.bound = endpoint_text(addr, port);
  return true;
}

// A reload keeps a listener's sockets when they would be bound the same way (config.h).
bool same_sockets(const config::ListenerConfig& a, const config::ListenerConfig& b) {
  return static_cast<const config::ListenerSocketConfig&>(a) == static_cast<const config::ListenerSocketConfig&>(b);
}

// A listener's sockets at start: those an upgrading parent passed when it had the listener's
// address (with more workers than passed sockets, more are bound beside them; with fewer, a
// worker accepts on several: a passed socket is never closed while its backlog may hold
// connections), else new ones.
bool listener_sockets(const config::ListenerConfig& l, unsigned workers, InheritedSockets& inherited,
                      std::vector<int>& fds, BoundListener& bound, std::string& error) {
  fds = inherited.take_listener(l);
  if (fds.empty()) return open_listener(l, workers, false, fds, bound, error);
  const uint16_t port = bound_port(fds.front());
  if (!add_reuseport_sockets(l.address, port, l.backlog, workers, fds, error)) {
    for (int f : fds) ::close(f);
    fds.clear();
    return false;
  }
  bound.config = l;
  bound.port = port;
  bound.bound = endpoint_text(boost::asio::ip::make_address(l.address), port);
  return true;
}

// Where this server runs, said once at start: which readiness wait the TLS transport compiled
// in (tls/edge_wait.h). The fast path depends on Boost internals, so an upgrade can silently
// drop it; this line (and tests/unit/tls/edge_wait_test.cc) makes that visible.
void log_build_facts() {
  spdlog::info("turnpike {} (commit {})", version(), git_commit());
#if TURNPIKE_EDGE_WAIT
  spdlog::info("readiness wait: edge fast path (Boost {}.{}.{} with epoll)", BOOST_VERSION / 100000,
               BOOST_VERSION / 100 % 1000, BOOST_VERSION % 100);
#else
  spdlog::info("readiness wait: socket.async_wait() fallback (Boost {}.{}.{}; the fast path is built only for "
               "Boost 1.81 with epoll)",
               BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000, BOOST_VERSION % 100);
#endif
}

void log_warnings(const std::vector<config::ConfigError>& warnings) {
  for (const auto& w : warnings) spdlog::warn("{}", w.to_string());
}

// The pid file (`pid_file`): for logrotate's `kill -USR1 $(cat ...)` and init scripts.
bool write_pid_file(const config::Config& cfg) {
  if (cfg.pid_file.empty()) return true;
  const std::string text = std::to_string(::getpid()) + "\n";
  int fd = ::open(cfg.pid_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int err = errno;
  if (fd >= 0) ::close(fd);
  if (!ok) {
    spdlog::critical("{}:{}: pid_file: cannot write {}: {}", cfg.pid_file_source.file, cfg.pid_file_source.line,
                     cfg.pid_file, std::strerror(err));
  }
  return ok;
}

// The upstream configs in use: the config's own, or a node file's update of one (which discovery
// must watch the names of). Each keeps what owns it alive.
std::vector<std::shared_ptr<const config::UpstreamConfig>> upstream_configs(const Snapshot& s) {
  std::vector<std::shared_ptr<const config::UpstreamConfig>> out;
  out.reserve(s.upstreams.size());
  for (const auto& up : s.upstreams) {
    // (The config's own: an aliasing pointer that keeps the whole config alive.)
    out.push_back(up->own_config ? up->own_config
                                 : std::shared_ptr<const config::UpstreamConfig>(s.config, up->config));
  }
  return out;
}

// (upstream, node file) for every upstream whose nodes come from a file.
std::vector<std::pair<std::string, std::string>> node_files_of(const Snapshot& s) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& up : s.upstreams) {
    if (!up->config->nodes_file.empty()) out.emplace_back(up->config->name, up->config->nodes_file);
  }
  return out;
}

// Removed at exit only while it still names this process (a newer turnpike may have taken it).
void remove_pid_file(const std::string& path) {
  if (path.empty()) return;
  std::ifstream f(path);
  long pid = 0;
  if (f >> pid && pid == ::getpid()) ::unlink(path.c_str());
}

class Server {
 public:
  explicit Server(const ServerOptions& options)
      : options_(options), signals_(main_), shutdown_delay_timer_(main_), watchdog_timer_(main_), trim_timer_(main_),
        inherited_(InheritedSockets::from_environment()), binary_path_(own_binary_path()) {
    start_time_ = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  int run();

 private:
  bool start();
  // Reloads the config file; false when refused (the errors are in last_reload_errors_).
  bool reload();
  // Node discovery found new addresses for these upstreams: swap in a snapshot with their new
  // nodes (on this thread, as reloads, so the two never race).
  void apply_discovery(const std::vector<std::string>& upstreams);
  // Upstream `upstream`'s node file may have changed: read it and, when its nodes are new and
  // usable, swap in a snapshot with them; otherwise the upstream keeps its nodes (errors logged).
  void apply_node_file(const std::string& upstream, const std::string& path);
  // `next`, a snapshot with new nodes for some upstreams, becomes the running one, given to the
  // workers and the health checker.
  void swap_upstreams(std::shared_ptr<const Snapshot> next);
  // The admin listener (admin: in the config), started after the workers.
  bool start_admin();
  AdminHooks admin_hooks();
  ScrapeInput scrape_input() const;
  boost::asio::awaitable<void> signal_loop();
  boost::asio::awaitable<void> stop();
  boost::asio::awaitable<void> cut_delay_on_signal();
  boost::asio::awaitable<void> drain();
  boost::asio::awaitable<void> watchdog_loop();
  // SIGUSR2, POST /upgrade: start the binary on disk with our sockets; drain once it serves.
  boost::asio::awaitable<void> upgrade();
  std::vector<PassedSocket> sockets_to_pass() const;
  std::string status_line() const;  // systemd's STATUS=
  void write_ready_file();
  void report(const std::vector<config::ConfigError>& errors);
  // Whether this process already listens on the address and port `l` names.
  bool holds(const config::ListenerConfig& l) const;
  // After a reload: gives the free pages the parse left behind back to the system a moment later,
  // once for a burst of reloads. (malloc_trim's madvise makes every CPU running a worker flush its
  // TLB; once per reload, that cost the workers during a rolling update of 2,000 nodes.)
  void trim_soon();

  ServerOptions options_;
  boost::asio::io_context main_;
  boost::asio::signal_set signals_;
  std::shared_ptr<const Snapshot> snapshot_;
  // The node's shared dictionaries: made at start, used by every worker (declared before them).
  lua::SharedDicts shared_dicts_;
  std::vector<config::SharedDictConfig> shared_dicts_config_;
  uint64_t limit_table_size_ = 0;  // the rate-limit table's size as made at start
  std::vector<std::unique_ptr<WorkerThread>> workers_;
  upstream::HealthChecker health_checker_;  // the process's one active checker (its own thread)
  upstream::NodeDiscovery discovery_;       // looks upstream names up again (its own thread)
  NodeFileWatcher node_files_{main_, [this](const std::string& upstream, const std::string& path) {
                                apply_node_file(upstream, path);
                              }};
  uint64_t node_file_updates_ok_ = 0, node_file_updates_failed_ = 0;
  std::map<std::string, BoundListener> listeners_;
  unsigned worker_count_ = 1;
  uint64_t generation_ = 0;
  uint64_t reload_attempts_ = 0;
  std::string last_reload_ = "none";
  std::vector<config::ConfigError> last_reload_errors_;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  double start_time_ = 0;  // seconds since the epoch
  // Label values with series of their own (admin: metrics on); outlives every snapshot's ids.
  std::unique_ptr<metrics::SeriesRegistry> series_;
  std::unique_ptr<AdminListener> admin_;
  bool stopping_ = false;
  boost::asio::steady_timer shutdown_delay_timer_;  // a second SIGTERM cancels it: drain at once
  SystemdNotifier notifier_;
  boost::asio::steady_timer watchdog_timer_;
  boost::asio::steady_timer trim_timer_;  // trim_soon()
  bool trim_pending_ = false;
  std::string pid_file_;  // the one written at start, removed at exit
  InheritedSockets inherited_;  // an upgrading parent's sockets (start only)
  std::string binary_path_;     // this binary's path on disk, as started
  bool upgrading_ = false;      // a new process is starting
  Upgrade* upgrade_attempt_ = nullptr;  // that start, while it runs
  bool handed_over_ = false;    // a new process serves: this one drains, silent to systemd
  std::string last_upgrade_ = "none";
  std::string last_upgrade_message_;
};

bool Server::holds(const config::ListenerConfig& l) const {
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(l.address, ec);
  for (const auto& [name, b] : listeners_) {
    if (b.port == l.port && boost::asio::ip::make_address(b.config.address, ec) == addr) return true;
  }
  return false;
}

namespace {

bool same_dicts(const std::vector<config::SharedDictConfig>& a, const std::vector<config::SharedDictConfig>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].size != b[i].size) return false;
  }
  return true;
}

}  // namespace

void Server::report(const std::vector<config::ConfigError>& errors) {
  for (const auto& e : errors) spdlog::error("{}", e.to_string());
}

bool Server::start() {
  auto loaded = config::load_config_file(options_.config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return false;
  }
  // The log files first, so a file that cannot be opened is reported at its line.
  if (auto file_errors = config::check_files(*loaded.config); !file_errors.empty()) {
    for (const auto& e : file_errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return false;
  }
  std::string log_error;
  if (!log::configure(loaded.config->log, log_error)) {
    std::fprintf(stderr, "%s: %s\n", options_.config_path.c_str(), log_error.c_str());
    return false;
  }
  log_build_facts();
  log_warnings(loaded.warnings);
  std::vector<config::ConfigError> errors;
  if (loaded.config->admin.enabled && loaded.config->admin.metrics) {
    series_ = std::make_unique<metrics::SeriesRegistry>(loaded.config->admin.series_cap);
  }
  snapshot_ = Snapshot::build(loaded.config, ++generation_, errors, series_.get());
  if (!snapshot_) {
    for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    return false;
  }
  // Parsing a large YAML file leaves a fragmented heap behind; hand the free pages back.
  ::malloc_trim(0);
  worker_count_ = options_.workers ? options_.workers : snapshot_->config->workers;
  if (worker_count_ == 0) worker_count_ = std::max(1u, std::thread::hardware_concurrency());

  std::vector<std::vector<std::pair<std::string, int>>> per_worker(worker_count_);
  for (const auto& l : snapshot_->config->listeners) {
    std::vector<int> fds;
    BoundListener bound;
    std::string error;
    if (!listener_sockets(l, worker_count_, inherited_, fds, bound, error)) {
      spdlog::critical("{}:{}: listener \"{}\": {}", l.source.file, l.source.line, l.name, error);
      for (auto& w : per_worker) for (auto& [n, fd] : w) ::close(fd);
      return false;
    }
    for (size_t i = 0; i < fds.size(); ++i) per_worker[i % worker_count_].emplace_back(l.name, fds[i]);
    spdlog::info("listener \"{}\" on {}", l.name, bound.bound);
    bound.fds = std::move(fds);
    listeners_[l.name] = std::move(bound);
  }
  // Before the workers: a refused admin address stops the start with nothing to undo but sockets.
  // (Its hooks read the workers only when a request comes, once main_ runs.)
  if (!start_admin()) {
    for (auto& w : per_worker) for (auto& [n, fd] : w) ::close(fd);
    return false;
  }
  for (const auto& gone : inherited_.close_untaken()) spdlog::info("upgrade: {} is no longer configured: closed", gone);
  // Last of what can fail: a new process that fails must not have taken the old one's pid file.
  if (!write_pid_file(*snapshot_->config)) {
    for (auto& w : per_worker) for (auto& [n, fd] : w) ::close(fd);
    admin_.reset();
    return false;
  }
  pid_file_ = snapshot_->config->pid_file;
  for (const auto& d : snapshot_->config->shared_dicts) shared_dicts_.add(d.name, d.size);
  shared_dicts_config_ = snapshot_->config->shared_dicts;
  lua::configure_limit_table(snapshot_->config->rate_limits.table_size);
  limit_table_size_ = snapshot_->config->rate_limits.table_size;
  lua::set_cluster_nodes(snapshot_->config->cluster.nodes);
  for (unsigned w = 0; w < worker_count_; ++w) {
    workers_.push_back(std::make_unique<WorkerThread>(w, snapshot_, &shared_dicts_));
  }
  for (unsigned w = 0; w < worker_count_; ++w) workers_[w]->start(std::move(per_worker[w]));
  health_checker_.start();
  health_checker_.update(snapshot_->config, snapshot_->upstreams);
  discovery_.start([this](std::vector<std::string> upstreams) {
    boost::asio::post(main_, [this, upstreams = std::move(upstreams)] { apply_discovery(upstreams); });
  });
  discovery_.update(snapshot_->config, upstream_configs(*snapshot_));
  node_files_.watch(node_files_of(*snapshot_));
  spdlog::info("turnpike started: {} workers, {} routes, {} upstreams", worker_count_,
               snapshot_->config->routes.size(), snapshot_->config->upstreams.size());
  return true;
}

bool Server::reload() {
  ++reload_attempts_;
  notifier_.reloading();
  spdlog::info("reloading {}", options_.config_path);
  auto loaded = config::load_config_file(options_.config_path);
  std::vector<config::ConfigError> errors = loaded.errors;
  std::shared_ptr<const Snapshot> next;
  if (loaded.config) next = Snapshot::build(loaded.config, generation_ + 1, errors, series_.get());
  // Listeners that are new or changed need sockets before anything is swapped.
  std::vector<std::vector<std::pair<std::string, int>>> per_worker(worker_count_);
  std::map<std::string, BoundListener> bound_next;
  if (next) {
    for (const auto& l : next->config->listeners) {
      auto old = listeners_.find(l.name);
      if (old != listeners_.end() && same_sockets(old->second.config, l)) {
        bound_next[l.name] = old->second;
        continue;
      }
      std::vector<int> fds;
      BoundListener bound;
      std::string error;
      if (!open_listener(l, worker_count_, holds(l), fds, bound, error)) {
        errors.push_back({l.source.file, l.source.line, "listener \"" + l.name + "\": " + error});
        break;
      }
      for (unsigned w = 0; w < worker_count_; ++w) per_worker[w].emplace_back(l.name, fds[w]);
      bound.fds = std::move(fds);
      bound_next[l.name] = std::move(bound);
    }
  }
  std::string log_error;
  if (errors.empty() && next && !log::configure(next->config->log, log_error)) {
    errors.push_back({options_.config_path, 0, log_error});
  }
  if (!errors.empty() || !next) {
    for (auto& w : per_worker) for (auto& [n, fd] : w) ::close(fd);
    spdlog::error("reload refused, the running configuration stays in place:");
    report(errors);
    last_reload_ = "failed";
    last_reload_errors_ = errors;
    ++reloads_failed_;
    write_ready_file();
    // READY=1 again: the old configuration serves on. STATUS says the reload was refused, and why.
    notifier_.ready("reload refused (" + (errors.empty() ? std::string("see the log") : errors.front().to_string()) +
                    "); " + status_line());
    return false;
  }
  if ((next->config->workers != 0 ? next->config->workers : worker_count_) != worker_count_ && !options_.workers) {
    spdlog::warn("reload: a new worker count takes effect on restart");
  }
  log_warnings(loaded.warnings);
  if (next->config->pid_file != pid_file_) spdlog::warn("reload: a new pid_file takes effect on restart");
  if (!(next->config->admin == snapshot_->config->admin)) spdlog::warn("reload: changes to admin take effect on restart");
  if (!same_dicts(next->config->shared_dicts, shared_dicts_config_)) {
    spdlog::warn("reload: changes to shared_dicts take effect on restart (their data is kept)");
  }
  if (next->config->rate_limits.table_size != limit_table_size_) {
    spdlog::warn("reload: a new rate_limits.table_size takes effect on restart (the counters are kept)");
  }
  lua::set_cluster_nodes(next->config->cluster.nodes);
  generation_ = next->generation;
  snapshot_ = next;
  for (unsigned w = 0; w < worker_count_; ++w) workers_[w]->post_snapshot(next, std::move(per_worker[w]));
  health_checker_.update(next->config, next->upstreams);
  discovery_.update(next->config, upstream_configs(*next));
  node_files_.watch(node_files_of(*next));
  listeners_ = std::move(bound_next);
  last_reload_ = "ok";
  last_reload_errors_.clear();
  ++reloads_ok_;
  trim_soon();
  spdlog::info("reload complete: generation {}", generation_);
  write_ready_file();
  notifier_.ready(status_line());
  return true;
}

void Server::apply_discovery(const std::vector<std::string>& upstreams) {
  if (stopping_) return;
  std::shared_ptr<const Snapshot> next = Snapshot::with_new_nodes(snapshot_, upstreams, series_.get());
  if (!next) return;
  upstream::discovery_stats().changes.fetch_add(1, std::memory_order_relaxed);
  swap_upstreams(std::move(next));
}

void Server::apply_node_file(const std::string& upstream, const std::string& path) {
  if (stopping_) return;
  const size_t u = snapshot_->find_upstream(upstream);
  if (u == SIZE_MAX || snapshot_->upstreams[u]->config->nodes_file != path) return;  // a reload changed it
  std::vector<config::UpstreamNodeConfig> nodes;
  std::vector<config::ConfigError> errors;
  std::shared_ptr<const Snapshot> next;
  if (config::read_node_file(path, nodes, errors)) {
    next = Snapshot::with_node_file(snapshot_, upstream, std::move(nodes), errors, series_.get());
  }
  if (!errors.empty()) {
    ++node_file_updates_failed_;
    // A list of 2,000 bad lines is not 2,000 log lines.
    constexpr size_t kShown = 10;
    spdlog::error("node file {} refused: upstream \"{}\" keeps its {} nodes", path, upstream,
                  snapshot_->upstreams[u]->nodes.size());
    for (size_t i = 0; i < errors.size() && i < kShown; ++i) spdlog::error("{}", errors[i].to_string());
    if (errors.size() > kShown) spdlog::error("... and {} more errors", errors.size() - kShown);
    return;
  }
  if (!next) return;  // the same nodes
  ++node_file_updates_ok_;
  swap_upstreams(next);
  discovery_.update(next->config, upstream_configs(*next), /*all_looked_up=*/false);  // (its names may have changed)
}

void Server::swap_upstreams(std::shared_ptr<const Snapshot> next) {
  snapshot_ = next;
  for (auto& w : workers_) w->post_snapshot(next, {});
  health_checker_.update(next->config, next->upstreams);
}

bool Server::start_admin() {
  const config::AdminConfig& cfg = snapshot_->config->admin;
  if (!cfg.enabled) return true;
  admin_ = std::make_unique<AdminListener>(main_, cfg, admin_hooks());
  std::string error;
  if (!admin_->start(error, inherited_.take_admin(cfg))) {
    spdlog::critical("{}:{}: admin: {}", cfg.source.file, cfg.source.line, error);
    admin_.reset();
    return false;
  }
  spdlog::info("admin listener on {}{}", admin_->bound(), cfg.metrics ? " (/metrics)" : "");
  return true;
}

ScrapeInput Server::scrape_input() const {
  ScrapeInput in;
  in.registry = series_.get();
  in.snapshot = snapshot_.get();
  for (const auto& w : workers_) {
    in.shards.push_back(&w->metrics());
    in.counters.push_back(&w->counters());
    if (w->plugin_metrics()) in.plugin_shards.push_back(w->plugin_metrics());
  }
  in.generation = generation_;
  in.reloads_ok = reloads_ok_;
  in.reloads_failed = reloads_failed_;
  in.start_time = start_time_;
  in.log_lines_dropped = log::dropped_lines();
  const auto& dns = upstream::discovery_stats();
  in.dns_lookups_ok = dns.lookups_ok.load(std::memory_order_relaxed);
  in.dns_lookups_failed = dns.lookups_failed.load(std::memory_order_relaxed);
  in.dns_node_changes = dns.changes.load(std::memory_order_relaxed);
  in.node_file_updates_ok = node_file_updates_ok_;
  in.node_file_updates_failed = node_file_updates_failed_;
  return in;
}

AdminHooks Server::admin_hooks() {
  AdminHooks h;
  h.metrics = [this](std::string& out) {
    out.clear();
    if (series_) render_metrics(scrape_input(), out);
  };
  h.status = [this] {
    StatusInput in;
    in.generation = generation_;
    in.uptime_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    in.workers = worker_count_;
    in.readiness = std::string(to_string(readiness().load()));
    in.last_reload = last_reload_;
    in.reload_errors = last_reload_errors_;
    in.reloads_ok = reloads_ok_;
    in.reloads_failed = reloads_failed_;
    for (const auto& [name, b] : listeners_) in.listeners.emplace_back(name, b.bound);
    in.pid = ::getpid();
    in.start_time = start_time_;
    in.last_upgrade = last_upgrade_;
    in.last_upgrade_message = last_upgrade_message_;
    return status_json(in);
  };
  h.upstreams = [this] { return upstreams_json(*snapshot_, scrape_input().shards); };
  h.config = [this] { return config_json(*snapshot_); };
  h.reload = [this] {
    if (stopping_) return AdminResponse{503, "application/json", reload_json(false, generation_, {})};
    if (upgrading_) {  // the new process reads the file anyway; this one must keep what it passed
      const config::ConfigError busy{options_.config_path, 0, "reload refused: a binary upgrade is in progress"};
      return AdminResponse{409, "application/json", reload_json(false, generation_, {busy})};
    }
    const bool ok = reload();
    return AdminResponse{ok ? 200 : 409, "application/json", reload_json(ok, generation_, last_reload_errors_)};
  };
  h.upgrade = [this] {
    if (stopping_) return AdminResponse{503, "application/json", "{\"error\":\"stopping\",\"message\":\"this process is stopping\"}\n"};
    if (upgrading_) {
      return AdminResponse{409, "application/json",
                           "{\"error\":\"upgrade_in_progress\",\"message\":\"a new process is starting\"}\n"};
    }
    upgrading_ = true;  // now, so a second request is refused before the coroutine runs
    boost::asio::co_spawn(main_, upgrade(), boost::asio::detached);
    return AdminResponse{202, "application/json", "{\"result\":\"started\",\"pid\":" + std::to_string(::getpid()) + "}\n"};
  };
  h.maintenance = [this](bool on) {
    Readiness expected = on ? Readiness::ready : Readiness::maintenance;
    // Draining wins: a stopping process never reports ready again.
    readiness().compare_exchange_strong(expected, on ? Readiness::maintenance : Readiness::ready);
    spdlog::info("maintenance {} (readiness: {})", on ? "on" : "off", to_string(readiness().load()));
    return AdminResponse{200, "application/json",
                         "{\"readiness\":" + json_string(to_string(readiness().load())) + "}\n"};
  };
  return h;
}

void Server::write_ready_file() {
  if (options_.ready_file.empty() || handed_over_) return;  // the new process's now
  std::string json = "{\"pid\": " + std::to_string(::getpid()) + ", \"readiness\": \"" +
                     std::string(to_string(readiness().load())) + "\", \"generation\": " + std::to_string(generation_) +
                     ", \"reload_attempts\": " + std::to_string(reload_attempts_) + ", \"last_reload\": \"" +
                     last_reload_ + "\", \"workers\": " + std::to_string(worker_count_) +
                     (admin_ ? ", \"admin\": \"" + admin_->bound() + "\"" : std::string()) + ", \"listeners\": {";
  bool first = true;
  for (const auto& [name, b] : listeners_) {
    json += (first ? "\"" : ", \"") + name + "\": \"" + b.bound + "\"";
    first = false;
  }
  json += "}}\n";
  std::string tmp = options_.ready_file + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << json;
  }
  std::rename(tmp.c_str(), options_.ready_file.c_str());
}

boost::asio::awaitable<void> Server::signal_loop() {
  for (;;) {
    auto [ec, sig] = co_await signals_.async_wait(nothrow);
    if (ec) co_return;
    if (sig == SIGHUP) {
      if (upgrading_) spdlog::warn("reload: ignored while an upgrade is in progress");
      if (!stopping_ && !upgrading_) reload();
    } else if (sig == SIGUSR2) {
      if (stopping_ || upgrading_) {
        spdlog::warn("upgrade: ignored ({})", stopping_ ? "stopping" : "an upgrade is in progress");
        continue;
      }
      upgrading_ = true;
      boost::asio::co_spawn(main_, upgrade(), boost::asio::detached);
    } else if (sig == SIGUSR1) {
      log::reopen();
      spdlog::info("log files reopened");
    } else if (sig == SIGTERM || sig == SIGINT) {
      if (stopping_) continue;
      stopping_ = true;
      if (upgrade_attempt_) upgrade_attempt_->abort();  // a new process starting would serve on
      co_await stop();
      co_return;
    }
  }
}

std::string Server::status_line() const {
  return fmt::format("serving: generation {}, {} listeners, {} workers, last reload {}", generation_,
                     listeners_.size(), worker_count_, last_reload_);
}

// The controlled stop: not ready first (the balancer's health check fails and it stops sending
// new connections) while every listener still accepts, for shutdown_delay; then the drain.
boost::asio::awaitable<void> Server::stop() {
  readiness().store(Readiness::draining);
  write_ready_file();
  const auto delay = snapshot_->config->shutdown_delay;
  if (delay.count() > 0) {
    spdlog::info("stopping: reporting not ready, still accepting for shutdown_delay ({} ms)", delay.count());
    notifier_.stopping("stopping: not ready, still accepting for shutdown_delay");
    shutdown_delay_timer_.expires_after(delay);
    boost::asio::co_spawn(main_, cut_delay_on_signal(), boost::asio::detached);
    auto [ec] = co_await shutdown_delay_timer_.async_wait(nothrow);
    if (ec) spdlog::info("stopping: shutdown_delay cut short by a second signal");
    signals_.cancel();  // ends cut_delay_on_signal's wait
  }
  notifier_.stopping("draining");
  co_await drain();
}

// During shutdown_delay: a second SIGTERM or SIGINT ends the delay (the operator means it).
boost::asio::awaitable<void> Server::cut_delay_on_signal() {
  for (;;) {
    auto [ec, sig] = co_await signals_.async_wait(nothrow);
    if (ec) co_return;
    if (sig == SIGTERM || sig == SIGINT) {
      shutdown_delay_timer_.cancel();
      co_return;
    }
  }
}

// WATCHDOG=1 at half the service's WatchdogSec=, from the main thread's loop: a main thread
// stuck (in a reload, say) stops the pings and systemd restarts the service.
boost::asio::awaitable<void> Server::watchdog_loop() {
  const auto interval = *notifier_.watchdog_interval();
  for (;;) {
    notifier_.watchdog();
    watchdog_timer_.expires_after(interval);
    auto [ec] = co_await watchdog_timer_.async_wait(nothrow);
    if (ec) co_return;
  }
}

std::vector<PassedSocket> Server::sockets_to_pass() const {
  std::vector<PassedSocket> out;
  for (const auto& [name, b] : listeners_) {
    for (int fd : b.fds) out.push_back({fd, "listener", name, b.bound});
  }
  if (admin_) out.push_back({admin_->native_handle(), "admin", "admin", admin_->bound()});
  return out;
}

boost::asio::awaitable<void> Server::upgrade() {
  const config::Config& cfg = *snapshot_->config;
  const std::string binary = cfg.upgrade_binary.empty() ? binary_path_ : cfg.upgrade_binary;
  notifier_.status("upgrading: starting " + binary + "; " + status_line());
  Upgrade attempt(main_, binary, options_.argv, sockets_to_pass(), cfg.upgrade_timeout);
  std::string why;
  upgrade_attempt_ = &attempt;
  const UpgradeResult result = co_await attempt.run(why);
  upgrade_attempt_ = nullptr;
  upgrading_ = false;
  last_upgrade_ = std::string(to_string(result));
  last_upgrade_message_ = why;
  if (result != UpgradeResult::taken_over) {
    spdlog::error("upgrade failed, this process serves on: {}", why);
    notifier_.status("upgrade failed (" + why + "); " + status_line());
    co_return;
  }
  // The new process accepts on the very same sockets (and systemd follows it): this one stops
  // accepting (closing its descriptors closes no socket) and drains, with no shutdown_delay.
  if (stopping_) {
    // Told to stop just as the new process got ready: the operator meant the service.
    spdlog::warn("upgrade: pid {} got ready while this process stops: stopping it too", attempt.pid());
    ::kill(attempt.pid(), SIGTERM);
    co_return;
  }
  handed_over_ = true;
  spdlog::info("upgrade: {}; this process stops accepting and drains", why);
  stopping_ = true;
  readiness().store(Readiness::draining);
  watchdog_timer_.cancel();
  if (admin_) admin_->stop();
  co_await drain();
}

boost::asio::awaitable<void> Server::drain() {
  auto timeout = snapshot_->config->drain_timeout;
  spdlog::info("draining: finishing in-flight requests (up to {} ms)", timeout.count());
  for (auto& w : workers_) w->post_drain();
  auto until = std::chrono::steady_clock::now() + timeout;
  boost::asio::steady_timer t(main_);
  for (;;) {
    bool all = true;
    for (auto& w : workers_) all = all && w->finished();
    if (all) break;
    if (std::chrono::steady_clock::now() >= until) {
      spdlog::warn("drain timeout: closing the remaining connections");
      for (auto& w : workers_) w->force_stop();
      until = std::chrono::steady_clock::time_point::max();
    }
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(nothrow);
  }
  watchdog_timer_.cancel();
  trim_timer_.cancel();
  node_files_.stop();  // (its poll timer and inotify read would keep main_ running)
  signals_.cancel();
  if (admin_) admin_->stop();
}

void Server::trim_soon() {
  if (trim_pending_ || stopping_) return;
  trim_pending_ = true;
  trim_timer_.expires_after(kTrimAfterReload);
  trim_timer_.async_wait([this](boost::system::error_code ec) {
    trim_pending_ = false;
    if (!ec) ::malloc_trim(0);
  });
}

int Server::run() {
  signals_.add(SIGHUP);
  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  signals_.add(SIGUSR1);
  signals_.add(SIGUSR2);
  if (!start()) {
    log::shutdown();
    return 1;
  }
  // Every listener is bound and every worker is accepting: the balancer and systemd may send traffic.
  readiness().store(Readiness::ready);
  if (inherited_.active()) {
    // Taking over: the old process stops accepting and drains once told; systemd follows us.
    spdlog::info("upgrade: serving; telling pid {} to drain", inherited_.parent());
    if (!inherited_.report_ready()) spdlog::warn("upgrade: pid {} could not be told: {}", inherited_.parent(), std::strerror(errno));
    notifier_.took_over(status_line());
  } else {
    notifier_.ready(status_line());
  }
  write_ready_file();
  if (notifier_.watchdog_interval()) boost::asio::co_spawn(main_, watchdog_loop(), boost::asio::detached);
  boost::asio::co_spawn(main_, signal_loop(), boost::asio::detached);
  main_.run();
  discovery_.stop();
  health_checker_.stop();
  for (auto& w : workers_) w->join();
  admin_.reset();
  // What the workers counted, summed: limits hit, failures, retries.
  std::string summary = "turnpike stopped:";
  for (const auto& [name, member] : kWorkerCounterNames) {
    uint64_t sum = 0;
    for (auto& w : workers_) sum += (w->counters().*member).value();
    summary += fmt::format(" {}={}", name, sum);
  }
  const auto tls = tls::tls_stats();
  summary += fmt::format(" tls_tickets_issued={} tls_tickets_decrypted={} tls_ticket_keys_rotated={} log_lines_dropped={}",
                         tls.tickets_issued, tls.tickets_decrypted, tls.ticket_keys_rotated, log::dropped_lines());
  spdlog::info("{}", summary);
  workers_.clear();
  remove_pid_file(pid_file_);
  log::shutdown();
  return 0;
}

}  // namespace

int run_server(const ServerOptions& options) {
  Server server(options);
  return server.run();
}

}  // namespace turnpike::proxy
