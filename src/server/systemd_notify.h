// The systemd notification protocol (sd_notify(3)), spoken directly: one datagram per message
// on the AF_UNIX socket named by $NOTIFY_SOCKET. No libsystemd; without $NOTIFY_SOCKET (not run
// by systemd with Type=notify) every call does nothing.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace turnpike::proxy {

class SystemdNotifier {
 public:
  // Reads $NOTIFY_SOCKET ("/path" or "@abstract") and $WATCHDOG_USEC / $WATCHDOG_PID.
  SystemdNotifier();
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  bool enabled() const { return fd_ >= 0; }
  // Sends "KEY=value\n..." lines as one datagram. False when it could not be sent.
  bool send(std::string_view state);

  void ready(std::string_view status);      // READY=1 and STATUS=
  // A new process that took over from an upgrading one: MAINPID=<ours> (with NotifyAccess=all
  // systemd follows it), READY=1 and STATUS=.
  void took_over(std::string_view status);
  void reloading();                         // RELOADING=1 with MONOTONIC_USEC= (systemd 253+)
  void status(std::string_view status);     // STATUS=
  void stopping(std::string_view status);   // STOPPING=1 and STATUS=
  void watchdog() { send("WATCHDOG=1"); }
  // The interval to send WATCHDOG=1 at (half the service's WatchdogSec=), when systemd asked
  // for it and this process is the one watched.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_interval_; }

 private:
  int fd_ = -1;
  std::string address_;  // sockaddr_un path bytes ('\0' first for the abstract namespace)
  std::optional<std::chrono::microseconds> watchdog_interval_;
};

}  // namespace turnpike::proxy
