// `turnpike --reload` and `turnpike --upgrade` (control.h): a blocking HTTP/1.1 client of the
// running process's admin listener, a request or a few per run.
#include "control.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "turnpike/config/config.h"

namespace turnpike::app {

namespace {

// A reload of a large config may take seconds; a stuck process must not hang `systemctl reload`.
constexpr int kRequestTimeoutMs = 60'000;
constexpr auto kPollInterval = std::chrono::milliseconds(100);
// After upgrade_timeout: the old process has given up by then and says so in /status.
constexpr auto kUpgradeGrace = std::chrono::seconds(10);

struct AdminTarget {
  std::string address;  // IP literal, no brackets
  uint16_t port = 0;
  std::string token;
};

struct Reply {
  int status = 0;
  std::string body;
};

void print_errors(const std::vector<config::ConfigError>& errors) {
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
}

// The admin listener to ask: --admin, else the config's (an unspecified address means loopback).
bool admin_target(const config::Config& cfg, const std::string& override_address, AdminTarget& t) {
  t.token = cfg.admin.token;
  if (!override_address.empty()) {
    const size_t colon = override_address.rfind(':');
    if (colon == std::string::npos) return false;
    t.address = override_address.substr(0, colon);
    if (t.address.size() >= 2 && t.address.front() == '[') t.address = t.address.substr(1, t.address.size() - 2);
    t.port = static_cast<uint16_t>(std::atoi(override_address.c_str() + colon + 1));
    return t.port != 0;
  }
  if (!cfg.admin.enabled || cfg.admin.port == 0) return false;
  t.address = cfg.admin.address == "0.0.0.0" ? "127.0.0.1" : cfg.admin.address == "::" ? "::1" : cfg.admin.address;
  t.port = cfg.admin.port;
  return true;
}

std::string target_text(const AdminTarget& t) {
  return (t.address.find(':') != std::string::npos ? "[" + t.address + "]" : t.address) + ":" + std::to_string(t.port);
}

// One request, answered and closed by the server (the admin listener serves one per connection).
bool request(const AdminTarget& t, const char* method, const char* path, Reply& reply, std::string& error) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (t.address.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(t.port);
    if (::inet_pton(AF_INET6, t.address.c_str(), &a->sin6_addr) != 1) len = 0; else len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(t.port);
    if (::inet_pton(AF_INET, t.address.c_str(), &a->sin_addr) != 1) len = 0; else len = sizeof(*a);
  }
  if (len == 0) {
    error = "invalid admin address " + t.address;
    return false;
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{kRequestTimeoutMs / 1000, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // bounds connect() too
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    error = "cannot reach the admin listener at " + target_text(t) + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  std::string req = std::string(method) + " " + path + " HTTP/1.1\r\nHost: " + target_text(t) +
                    "\r\nContent-Length: 0\r\nConnection: close\r\n";
  if (!t.token.empty()) req += "Authorization: Bearer " + t.token + "\r\n";
  req += "\r\n";
  std::string in;
  bool ok = ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
  char buf[8192];
  for (ssize_t n; ok && (n = ::recv(fd, buf, sizeof(buf), 0)) != 0;) {
    if (n < 0) ok = false; else in.append(buf, static_cast<size_t>(n));
  }
  const int err = errno;
  ::close(fd);
  const size_t head_end = in.find("\r\n\r\n");
  if (!ok || head_end == std::string::npos || in.size() < 12) {
    error = "no answer from the admin listener at " + target_text(t) + (ok ? "" : std::string(": ") + std::strerror(err));
    return false;
  }
  reply.status = std::atoi(in.c_str() + 9);  // "HTTP/1.1 200 OK"
  reply.body = in.substr(head_end + 4);
  return true;
}

// Every value of "key":"..." in a JSON text, unescaped (the admin API's documents are flat
// enough for this; \uXXXX escapes of control characters are kept as they are).
std::vector<std::string> string_values(const std::string& json, const std::string& key) {
  std::vector<std::string> out;
  const std::string needle = "\"" + key + "\":\"";
  for (size_t pos = json.find(needle); pos != std::string::npos; pos = json.find(needle, pos)) {
    pos += needle.size();
    std::string v;
    for (; pos < json.size() && json[pos] != '"'; ++pos) {
      if (json[pos] == '\\' && pos + 1 < json.size()) {
        const char c = json[++pos];
        v += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
      } else {
        v += json[pos];
      }
    }
    out.push_back(std::move(v));
  }
  return out;
}

long number_value(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t pos = json.find(needle);
  return pos == std::string::npos ? -1 : std::strtol(json.c_str() + pos + needle.size(), nullptr, 10);
}

std::shared_ptr<const config::Config> load(const std::string& path) {
  auto loaded = config::load_config_file(path);
  if (!loaded.config) {
    print_errors(loaded.errors);
    std::fprintf(stderr, "turnpike: %s does not load; the running configuration stays in place\n", path.c_str());
  }
  return loaded.config;
}

// Without an admin listener: SIGHUP, as `kill -HUP` would. The outcome is only in the log.
int signal_reload(const config::Config& cfg, long pid) {
  if (pid <= 0 && !cfg.pid_file.empty()) {
    std::ifstream f(cfg.pid_file);
    f >> pid;
  }
  if (pid <= 0) {
    std::fprintf(stderr, "turnpike: no admin listener in %s and no pid (--pid or pid_file): cannot reach the running "
                 "process\n", cfg.file.c_str());
    return 1;
  }
  if (::kill(static_cast<pid_t>(pid), SIGHUP) != 0) {
    std::fprintf(stderr, "turnpike: SIGHUP to pid %ld: %s\n", pid, std::strerror(errno));
    return 1;
  }
  std::fprintf(stderr, "turnpike: SIGHUP sent to pid %ld; without an admin listener its result is only in the log\n",
               pid);
  return 0;
}

}  // namespace

int reload_running(const ControlOptions& options) {
  const auto cfg = load(options.config_path);
  if (!cfg) return 1;
  AdminTarget target;
  if (!admin_target(*cfg, options.admin, target)) return signal_reload(*cfg, options.pid);
  Reply reply;
  std::string error;
  if (!request(target, "POST", "/reload", reply, error)) {
    std::fprintf(stderr, "turnpike: %s\n", error.c_str());
    return 1;
  }
  if (reply.status == 200) {
    std::printf("reload complete: generation %ld\n", number_value(reply.body, "config_generation"));
    return 0;
  }
  if (reply.status == 409) {
    for (const auto& text : string_values(reply.body, "text")) std::fprintf(stderr, "%s\n", text.c_str());
    std::fprintf(stderr, "turnpike: reload refused; the running configuration stays in place\n");
  } else {
    std::fprintf(stderr, "turnpike: reload not done: HTTP %d %s", reply.status, reply.body.c_str());
  }
  return 1;
}

int upgrade_running(const ControlOptions& options) {
  const auto cfg = load(options.config_path);
  if (!cfg) return 1;
  AdminTarget target;
  if (!admin_target(*cfg, options.admin, target)) {
    std::fprintf(stderr, "turnpike: no admin listener in %s (or --admin): send SIGUSR2 to the main process "
                 "instead\n", options.config_path.c_str());
    return 1;
  }
  Reply before, reply;
  std::string error;
  if (!request(target, "GET", "/status", before, error) || !request(target, "POST", "/upgrade", reply, error)) {
    std::fprintf(stderr, "turnpike: %s\n", error.c_str());
    return 1;
  }
  if (reply.status != 202) {
    std::fprintf(stderr, "turnpike: upgrade not started: HTTP %d %s", reply.status, reply.body.c_str());
    return 1;
  }
  const long old_pid = number_value(before.body, "pid");
  const auto old_message = string_values(before.body, "message");
  const auto until = std::chrono::steady_clock::now() + cfg->upgrade_timeout + kUpgradeGrace;
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(kPollInterval);
    Reply now;
    if (!request(target, "GET", "/status", now, error) || now.status != 200) continue;
    const long pid = number_value(now.body, "pid");
    if (pid != old_pid) {
      std::printf("upgrade complete: pid %ld serves (was pid %ld)\n", pid, old_pid);
      return 0;
    }
    if (string_values(now.body, "message") != old_message) {
      const auto message = string_values(now.body, "message");
      std::fprintf(stderr, "turnpike: upgrade failed, pid %ld serves on: %s\n", old_pid,
                   message.empty() ? "?" : message.front().c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "turnpike: no outcome of the upgrade within upgrade_timeout; see the log\n");
  return 1;
}

}  // namespace turnpike::app
