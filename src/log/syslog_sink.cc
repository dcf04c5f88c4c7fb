// RFC 5424 syslog over UDP or a Unix datagram socket (syslog_sink.h). Runs on the log thread,
// once per line: format the header, one send(); a line that cannot be sent is dropped (a
// syslog daemon that is down must not stop the gateway), and counted in the exit summary's
// log_lines_dropped like a queue overrun.
#include "syslog_sink.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <spdlog/details/log_msg.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>

#include "turnpike/common/strings.h"

namespace turnpike::log::detail {

namespace {

constexpr std::string_view kPrefix = "syslog:";
constexpr int kFacilityLocal0 = 16;  // RFC 5424 §6.2.1
constexpr size_t kMaxMessage = 8192;  // rsyslog's default maxMessageSize

// RFC 5424 §6.2.1 severities for spdlog's levels.
int severity(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug: return 7;
    case spdlog::level::info: return 6;
    case spdlog::level::warn: return 4;
    case spdlog::level::err: return 3;
    case spdlog::level::critical: return 2;
    default: return 6;
  }
}

class SyslogSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  SyslogSink(int fd, std::string msgid) : fd_(fd), msgid_(std::move(msgid)) {
    char host[256] = "-";
    if (::gethostname(host, sizeof host) != 0 || host[0] == '\0') std::strcpy(host, "-");
    host[sizeof host - 1] = '\0';
    hostname_ = host;
    pid_ = std::to_string(::getpid());
  }
  ~SyslogSink() override { ::close(fd_); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t body;
    formatter_->format(msg, body);
    size_t len = body.size();
    while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == '\r')) --len;  // one message, no newline
    // HEADER: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then STRUCTURED-DATA "-" and MSG.
    const auto since = msg.time.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(since - secs).count();
    const std::time_t t = secs.count();
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    line_.clear();
    fmt::format_to(std::back_inserter(line_), "<{}>1 {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z {} turnpike {} {} - ",
                   kFacilityLocal0 * 8 + severity(msg.level), tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, micros, hostname_, pid_, msgid_);
    line_.append(body.data(), body.data() + std::min(len, kMaxMessage - std::min(kMaxMessage, line_.size())));
    if (::send(fd_, line_.data(), line_.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) ++dropped_;
  }
  void flush_() override {}

 private:
  int fd_;
  std::string msgid_;
  std::string hostname_;
  std::string pid_;
  spdlog::memory_buf_t line_;
  uint64_t dropped_ = 0;
};

// "udp:10.0.0.5:514", "udp:[::1]:514", "unix:/dev/log" → a connected datagram socket, or -1.
int connect_target(std::string_view spec, std::string& error) {
  if (spec.substr(0, 5) == "unix:") {
    const std::string_view path = spec.substr(5);
    sockaddr_un sa{};
    if (path.empty() || path.size() >= sizeof sa.sun_path) {
      error = "syslog:unix: needs a socket path";
      return -1;
    }
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.data(), path.size());
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      error = "cannot connect to syslog socket " + std::string(path) + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return -1;
    }
    return fd;
  }
  if (spec.substr(0, 4) != "udp:") {
    error = "a syslog target is syslog:udp:HOST:PORT or syslog:unix:PATH";
    return -1;
  }
  std::string_view hostport = spec.substr(4);
  const size_t colon = hostport.rfind(':');
  std::string host(colon == std::string_view::npos ? hostport : hostport.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const auto port = colon == std::string_view::npos ? std::nullopt : parse_decimal(hostport.substr(colon + 1));
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (!port || *port < 1 || *port > 65535) {
    error = "syslog:udp: needs HOST:PORT with a port in 1..65535";
    return -1;
  }
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(*port));
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(*port));
    len = sizeof *v6;
  } else {
    error = "syslog:udp: \"" + host + "\" is not an IP address";
    return -1;
  }
  const int fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    error = "cannot open a UDP socket to syslog " + std::string(hostport) + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

bool is_syslog_target(const std::string& target) { return target.rfind(kPrefix, 0) == 0; }

std::shared_ptr<spdlog::sinks::sink> open_syslog_sink(const std::string& target, const std::string& msgid,
                                                      std::string& error) {
  const int fd = connect_target(std::string_view(target).substr(kPrefix.size()), error);
  if (fd < 0) return nullptr;
  return std::make_shared<SyslogSink>(fd, msgid);
}

}  // namespace turnpike::log::detail
