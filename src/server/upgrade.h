// Hitless binary upgrade (nginx's USR2 model). On SIGUSR2 or POST /upgrade the running process
// fork+execs the binary at its path on disk (after `apt install`, the new one) with its own
// arguments. The new process inherits every listening socket: each worker's SO_REUSEPORT socket
// of every listener and the admin listener, named in $TURNPIKE_UPGRADE_SOCKETS
// ("fd kind name address;..."), and the write end of a pipe ($TURNPIKE_UPGRADE_PIPE). It adopts
// the sockets its config still names, binds what is new, closes the rest, and once ready writes
// "ready" on the pipe; only then does the old process stop accepting, drain and exit. A new
// process that exits, or is not ready within upgrade_timeout, leaves the old one serving.
//
// Why inheritance and not SCM_RIGHTS over a Unix socket: the new process is our own child, so the
// descriptors pass atomically with the exec, with no socket path to create, protect and clean up,
// and it works the same inside a systemd service's cgroup. The socket file descriptions are the
// same in both processes: the old one closing its descriptors never closes a socket, so no
// connection waiting in a backlog is lost.
#pragma once

#include <sys/types.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "turnpike/config/config.h"

namespace turnpike::proxy {

// One listening socket handed from the old process to the new one.
struct PassedSocket {
  int fd = -1;
  std::string kind;     // "listener" or "admin"
  std::string name;     // the listener's name in the old process's config ("admin" for admin)
  std::string address;  // what it is bound to: "127.0.0.1:8080", "[::1]:8080"
};

// ---- In the new process ----

// The sockets and the pipe an upgrading parent passed, read once from the environment at start.
class InheritedSockets {
 public:
  // Reads and unsets $TURNPIKE_UPGRADE_SOCKETS / $TURNPIKE_UPGRADE_PIPE. Without them (a plain
  // start) active() is false and every take returns nothing.
  static InheritedSockets from_environment();
  InheritedSockets() = default;
  InheritedSockets(InheritedSockets&&) noexcept;
  InheritedSockets& operator=(InheritedSockets&&) noexcept;
  ~InheritedSockets();

  bool active() const { return pipe_fd_ >= 0; }
  pid_t parent() const { return parent_; }
  // The passed sockets bound to the address and port `l` names (for port 0: the one the listener
  // of the same name had), now owned by the caller. Empty when none is.
  std::vector<int> take_listener(const config::ListenerConfig& l);
  // The passed admin socket when `admin` names its address and port; -1 when not.
  int take_admin(const config::AdminConfig& admin);
  // Closes the passed sockets no listener took (listeners gone from the config); returns their
  // addresses for the log. The old process serves what their backlogs hold while it drains.
  std::vector<std::string> close_untaken();
  // Tells the parent that this process serves now; it then stops accepting and drains.
  bool report_ready();

 private:
  std::vector<PassedSocket> sockets_;
  int pipe_fd_ = -1;
  pid_t parent_ = 0;
};

// Adds to `fds` (bound to `address:port` by an inherited socket) SO_REUSEPORT sockets until it
// has `count`: a new process with more workers than the old one had. No probe: the port is ours.
bool add_reuseport_sockets(const std::string& address, uint16_t port, int backlog, size_t count, std::vector<int>& fds,
                           std::string& error);

// The bound port of a listening socket (0 when unknown).
uint16_t bound_port(int fd);

// ---- In the old process ----

// The path the running binary was started from, on disk: where `apt install` puts the new one.
// (Executing /proc/self/exe would run the old, replaced file again.)
std::string own_binary_path();

enum class UpgradeResult { taken_over, exited, timed_out, not_started };
std::string_view to_string(UpgradeResult r);

// One upgrade attempt: the new process started, then waited for.
class Upgrade {
 public:
  // `argv`: the arguments this process was started with (argv[0] is replaced by `binary`).
  Upgrade(boost::asio::io_context& io, std::string binary, std::vector<std::string> argv,
          std::vector<PassedSocket> sockets, std::chrono::milliseconds timeout);
  ~Upgrade();

  // Starts the new process and waits until it reports ready, exits or times out (then it is
  // killed). `why` says what happened, for the log and the admin API.
  boost::asio::awaitable<UpgradeResult> run(std::string& why);
  pid_t pid() const { return pid_; }
  // The old process is told to stop while the new one starts: kill the new one (run() then
  // ends with `exited`).
  void abort();

 private:
  bool spawn(std::string& error);

  boost::asio::io_context& io_;
  std::string binary_;
  std::vector<std::string> argv_;
  std::vector<PassedSocket> sockets_;
  std::chrono::milliseconds timeout_;
  pid_t pid_ = -1;
  int pipe_read_ = -1;
};

}  // namespace turnpike::proxy
