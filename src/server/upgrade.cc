// Hitless binary upgrade (upgrade.h): the old process spawns the new one with its listening
// sockets, the new one adopts them and reports ready over a pipe. Main thread only, a few times
// in a process's life.
#include "upgrade.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <spdlog/spdlog.h>

extern char** environ;

namespace turnpike::proxy {

namespace {

namespace asio = boost::asio;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr const char* kSocketsEnv = "TURNPIKE_UPGRADE_SOCKETS";
constexpr const char* kPipeEnv = "TURNPIKE_UPGRADE_PIPE";
constexpr std::string_view kReady = "ready\n";
// After the pipe closed: how long the new process may take to be reaped before it is killed.
constexpr auto kExitWait = std::chrono::seconds(5);
// Without close_range(2) (Linux < 5.11): descriptors marked close-on-exec one by one up to this.
constexpr int kMaxFdScan = 1 << 16;

// Names go into a space- and semicolon-separated list: those, and '%', are %XX-escaped.
std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' || c == ';' || c == '%' || static_cast<unsigned char>(c) < 0x20) {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::strtol(std::string(s.substr(i + 1, 2)).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// "127.0.0.1:8080" or "[::1]:8080" → address and port; false when malformed.
bool split_address(std::string_view text, asio::ip::address& addr, uint16_t& port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string host(text.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  addr = asio::ip::make_address(host, ec);
  const long p = std::strtol(std::string(text.substr(colon + 1)).c_str(), nullptr, 10);
  if (ec || p <= 0 || p > 65535) return false;
  port = static_cast<uint16_t>(p);
  return true;
}

bool same_address(const std::string& configured, const asio::ip::address& passed) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(configured, ec);
  return !ec && addr == passed;
}

void set_cloexec(int fd) { ::fcntl(fd, F_SETFD, FD_CLOEXEC); }

std::string exit_text(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + ::strsignal(WTERMSIG(status));
  return "ended";
}

}  // namespace

// ---- The new process ----

InheritedSockets InheritedSockets::from_environment() {
  InheritedSockets in;
  const char* sockets = std::getenv(kSocketsEnv);
  const char* pipe = std::getenv(kPipeEnv);
  if (!sockets || !pipe) return in;
  in.pipe_fd_ = std::atoi(pipe);
  in.parent_ = ::getppid();
  set_cloexec(in.pipe_fd_);  // not for a later child of ours (a plugin's process, the next upgrade)
  std::string_view list(sockets);
  while (!list.empty()) {
    const size_t end = list.find(';');
    std::string_view item = list.substr(0, end);
    list = end == std::string_view::npos ? std::string_view() : list.substr(end + 1);
    // "fd kind name address"
    PassedSocket s;
    std::string parts[4];
    size_t n = 0;
    for (size_t pos = 0; n < 4 && pos <= item.size(); ++n) {
      const size_t sp = item.find(' ', pos);
      parts[n] = std::string(item.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos));
      if (sp == std::string_view::npos) {
        ++n;
        break;
      }
      pos = sp + 1;
    }
    if (n != 4) continue;
    s.fd = std::atoi(parts[0].c_str());
    s.kind = parts[1];
    s.name = unescape(parts[2]);
    s.address = parts[3];
    if (s.fd <= 2) continue;
    set_cloexec(s.fd);
    in.sockets_.push_back(std::move(s));
  }
  ::unsetenv(kSocketsEnv);
  ::unsetenv(kPipeEnv);
  return in;
}

InheritedSockets::InheritedSockets(InheritedSockets&& o) noexcept
    : sockets_(std::move(o.sockets_)), pipe_fd_(o.pipe_fd_), parent_(o.parent_) {
  o.sockets_.clear();
  o.pipe_fd_ = -1;
}

InheritedSockets& InheritedSockets::operator=(InheritedSockets&& o) noexcept {
  if (this != &o) {
    close_untaken();
    if (pipe_fd_ >= 0) ::close(pipe_fd_);
    sockets_ = std::move(o.sockets_);
    o.sockets_.clear();
    pipe_fd_ = o.pipe_fd_;
    parent_ = o.parent_;
    o.pipe_fd_ = -1;
  }
  return *this;
}

InheritedSockets::~InheritedSockets() {
  close_untaken();
  if (pipe_fd_ >= 0) ::close(pipe_fd_);
}

std::vector<int> InheritedSockets::take_listener(const config::ListenerConfig& l) {
  std::vector<int> out;
  for (auto it = sockets_.begin(); it != sockets_.end();) {
    asio::ip::address addr;
    uint16_t port = 0;
    const bool match = it->kind == "listener" && split_address(it->address, addr, port) &&
                       same_address(l.address, addr) && (l.port == port || (l.port == 0 && l.name == it->name));
    if (!match) {
      ++it;
      continue;
    }
    // The configured backlog, which may have changed (listen() on a listening socket sets it).
    ::listen(it->fd, l.backlog);
    out.push_back(it->fd);
    it = sockets_.erase(it);
  }
  return out;
}

int InheritedSockets::take_admin(const config::AdminConfig& admin) {
  for (auto it = sockets_.begin(); it != sockets_.end(); ++it) {
    asio::ip::address addr;
    uint16_t port = 0;
    if (it->kind == "admin" && split_address(it->address, addr, port) && same_address(admin.address, addr) &&
        (admin.port == port || admin.port == 0)) {
      const int fd = it->fd;
      sockets_.erase(it);
      return fd;
    }
  }
  return -1;
}

std::vector<std::string> InheritedSockets::close_untaken() {
  std::vector<std::string> closed;
  for (const auto& s : sockets_) {
    ::close(s.fd);
    closed.push_back(s.kind + " \"" + s.name + "\" on " + s.address);
  }
  sockets_.clear();
  return closed;
}

bool InheritedSockets::report_ready() {
  if (pipe_fd_ < 0) return false;
  const bool ok = ::write(pipe_fd_, kReady.data(), kReady.size()) == static_cast<ssize_t>(kReady.size());
  ::close(pipe_fd_);
  pipe_fd_ = -1;
  return ok;
}

uint16_t bound_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  return ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

bool add_reuseport_sockets(const std::string& address, uint16_t port, int backlog, size_t count, std::vector<int>& fds,
                           std::string& error) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(address, ec);
  if (ec) {
    error = "invalid address " + address;
    return false;
  }
  const asio::ip::tcp::endpoint ep(addr, port);
  while (fds.size() < count) {
    int fd = ::socket(addr.is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        ::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0 || ::listen(fd, backlog) != 0) {
      error = "cannot add a socket on " + address + ":" + std::to_string(port) + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return false;
    }
    fds.push_back(fd);
  }
  return true;
}

// ---- The old process ----

std::string own_binary_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";  // replaced on disk since we started
  if (path.size() > kDeleted.size() && path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0) {
    path.resize(path.size() - kDeleted.size());
  }
  return path;
}

std::string_view to_string(UpgradeResult r) {
  switch (r) {
    case UpgradeResult::taken_over: return "taken_over";
    case UpgradeResult::exited: return "exited";
    case UpgradeResult::timed_out: return "timed_out";
    case UpgradeResult::not_started: return "not_started";
  }
  return "?";
}

Upgrade::Upgrade(asio::io_context& io, std::string binary, std::vector<std::string> argv,
                 std::vector<PassedSocket> sockets, std::chrono::milliseconds timeout)
    : io_(io), binary_(std::move(binary)), argv_(std::move(argv)), sockets_(std::move(sockets)), timeout_(timeout) {}

Upgrade::~Upgrade() {
  if (pipe_read_ >= 0) ::close(pipe_read_);
}

bool Upgrade::spawn(std::string& error) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    return false;
  }
  // Everything the child needs is made before fork: between fork and exec it may only make
  // async-signal-safe calls (other threads may hold the allocator's locks).
  std::string list;
  std::vector<int> inherit;
  for (const auto& s : sockets_) {
    if (!list.empty()) list += ';';
    list += std::to_string(s.fd) + " " + s.kind + " " + escape(s.name) + " " + s.address;
    inherit.push_back(s.fd);
  }
  inherit.push_back(p[1]);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view v(*e);
    // WATCHDOG_PID names this process: the new one, once it is the main process, pings instead.
    if (v.starts_with(kSocketsEnv) || v.starts_with(kPipeEnv) || v.starts_with("WATCHDOG_PID=")) continue;
    env.emplace_back(v);
  }
  env.push_back(std::string(kSocketsEnv) + "=" + list);
  env.push_back(std::string(kPipeEnv) + "=" + std::to_string(p[1]));
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv_;
  if (args.empty()) args.emplace_back();
  args[0] = binary_;
  std::vector<char*> argvp;
  for (auto& a : args) argvp.push_back(a.data());
  argvp.push_back(nullptr);
  const std::string exec_failed = "turnpike: upgrade: cannot execute " + binary_ + "\n";

  // No signal handler of ours may run in the child before exec (Asio's would write to the
  // parent's signal pipe): block them all across fork, reset them in the child.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD}) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    ::sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    // Nothing else of ours goes along: Asio opens client and upstream sockets without
    // close-on-exec, and a copy held by the new process would keep them open for good.
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      for (int fd = 3; fd < kMaxFdScan; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    for (int fd : inherit) ::fcntl(fd, F_SETFD, 0);
    ::execve(binary_.c_str(), argvp.data(), envp.data());
    [[maybe_unused]] ssize_t ignored = ::write(2, exec_failed.data(), exec_failed.size());
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(p[1]);
  if (pid < 0) {
    ::close(p[0]);
    error = std::string("fork: ") + std::strerror(fork_errno);
    return false;
  }
  pid_ = pid;
  pipe_read_ = p[0];
  return true;
}

void Upgrade::abort() {
  if (pid_ > 0) ::kill(pid_, SIGKILL);
}

asio::awaitable<UpgradeResult> Upgrade::run(std::string& why) {
  std::string error;
  if (!spawn(error)) {
    why = error;
    co_return UpgradeResult::not_started;
  }
  spdlog::info("upgrade: started {} as pid {}, handing it {} listening sockets", binary_, pid_, sockets_.size());
  // Shared with the deadline's handler, which may already be queued when the read completes.
  struct Wait {
    asio::posix::stream_descriptor pipe;
    bool timed_out = false;
  };
  auto w = std::make_shared<Wait>(Wait{asio::posix::stream_descriptor(io_, pipe_read_)});
  pipe_read_ = -1;  // the descriptor owns it now
  asio::steady_timer deadline(io_, timeout_);
  deadline.async_wait([w](boost::system::error_code ec) {
    if (ec) return;
    w->timed_out = true;
    boost::system::error_code ignored;
    w->pipe.cancel(ignored);
  });
  std::string got;
  char buf[64];
  for (;;) {
    auto [ec, n] = co_await w->pipe.async_read_some(asio::buffer(buf), nothrow);
    if (ec) break;  // EOF: the new process exited (or closed it without a word); or the deadline
    got.append(buf, n);
    if (got.find('\n') != std::string::npos) break;
  }
  deadline.cancel();
  const bool timed_out = w->timed_out;
  if (got == kReady) {
    why = "pid " + std::to_string(pid_) + " serves now";
    co_return UpgradeResult::taken_over;
  }
  if (timed_out) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    why = "pid " + std::to_string(pid_) + " was not ready within upgrade_timeout (" + std::to_string(timeout_.count()) +
          " ms): killed";
    co_return UpgradeResult::timed_out;
  }
  // The pipe closed: the new process is exiting. Reap it (bounded) to say how it ended.
  int status = 0;
  asio::steady_timer wait(io_);
  const auto until = std::chrono::steady_clock::now() + kExitWait;
  pid_t reaped = 0;
  while ((reaped = ::waitpid(pid_, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < until) {
    wait.expires_after(std::chrono::milliseconds(20));
    co_await wait.async_wait(nothrow);
  }
  if (reaped == 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    why = "pid " + std::to_string(pid_) + " closed its pipe without reporting ready: killed";
  } else {
    why = "pid " + std::to_string(pid_) + " " + exit_text(status) + " before it was ready (its messages are in the log)";
  }
  co_return UpgradeResult::exited;
}

}  // namespace turnpike::proxy
