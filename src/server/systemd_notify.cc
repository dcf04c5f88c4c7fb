// sd_notify(3) over $NOTIFY_SOCKET (systemd_notify.h). Used a few times per process life on the
// main thread: start, reloads, stop, and the watchdog's ping.
#include "systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <spdlog/spdlog.h>

namespace turnpike::proxy {

namespace {

// STATUS= is one line: newlines in a status text would start a new (bogus) assignment.
std::string one_line(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

SystemdNotifier::SystemdNotifier() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path && *path) {
    std::string addr(path);
    if (addr[0] == '@') addr[0] = '\0';  // the abstract namespace
    if ((addr[0] == '/' || addr[0] == '\0') && addr.size() < sizeof(sockaddr_un{}.sun_path)) {
      fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      address_ = std::move(addr);
    } else {
      spdlog::warn("NOTIFY_SOCKET={}: not a Unix socket path; systemd will not hear from us", path);
    }
  }
  // sd_watchdog_enabled(3): WATCHDOG_PID, when set, names the process that must ping.
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  if (fd_ >= 0 && usec && (!pid || std::strtol(pid, nullptr, 10) == ::getpid())) {
    const long long us = std::strtoll(usec, nullptr, 10);
    if (us > 0) watchdog_interval_ = std::chrono::microseconds(us / 2);
  }
}

SystemdNotifier::~SystemdNotifier() {
  if (fd_ >= 0) ::close(fd_);
}

bool SystemdNotifier::send(std::string_view state) {
  if (fd_ < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, address_.data(), address_.size());
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  const ssize_t n = ::sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), len);
  if (n != static_cast<ssize_t>(state.size())) {
    spdlog::debug("systemd notification not sent: {}", std::strerror(errno));
    return false;
  }
  return true;
}

void SystemdNotifier::ready(std::string_view status) { send("READY=1\nSTATUS=" + one_line(status)); }

void SystemdNotifier::took_over(std::string_view status) {
  send("MAINPID=" + std::to_string(::getpid()) + "\nREADY=1\nSTATUS=" + one_line(status));
}

void SystemdNotifier::reloading() {
  // systemd 253+ pairs RELOADING=1 with the CLOCK_MONOTONIC time it was sent at.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const unsigned long long usec =
      static_cast<unsigned long long>(ts.tv_sec) * 1'000'000ULL + static_cast<unsigned long long>(ts.tv_nsec) / 1000;
  send("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" + std::to_string(usec));
}

void SystemdNotifier::status(std::string_view status) { send("STATUS=" + one_line(status)); }

void SystemdNotifier::stopping(std::string_view status) { send("STOPPING=1\nSTATUS=" + one_line(status)); }

}  // namespace turnpike::proxy
