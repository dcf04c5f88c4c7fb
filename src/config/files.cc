// Checks that need the file system: can a start open what the config names? Run by `turnpike -t`
// so that a config which passes it does not then fail to start on an unwritable log file.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "turnpike/config/config.h"

namespace turnpike::config {

namespace {

// "stderr", "stdout" and "off" are not files.
bool is_file_target(const std::string& target) {
  return target != "stderr" && target != "stdout" && target != "off" && target.rfind("syslog:", 0) != 0;
}

// Opens `path` the way the log sinks do (append, create 0644) and closes it again.
void check_appendable(const std::string& path, const SourceRef& at, const char* key,
                      std::vector<ConfigError>& out) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    out.push_back({at.file, at.line, std::string("log.") + key + ": cannot open " + path +
                                         " for appending: " + std::strerror(errno)});
    return;
  }
  ::close(fd);
}

// The pid file itself is left alone (a running turnpike may own it); its directory must let us
// create and remove it.
void check_pid_dir(const Config& cfg, std::vector<ConfigError>& out) {
  const std::string& path = cfg.pid_file;
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    out.push_back({cfg.pid_file_source.file, cfg.pid_file_source.line,
                   "pid_file: cannot create " + path + " in " + dir + ": " + std::strerror(errno)});
  }
}

}  // namespace

std::vector<ConfigError> check_files(const Config& cfg) {
  std::vector<ConfigError> out;
  if (is_file_target(cfg.log.error_log)) {
    check_appendable(cfg.log.error_log, cfg.log.error_log_source, "error_log", out);
  }
  if (is_file_target(cfg.log.access_log) && cfg.log.access_log != cfg.log.error_log) {
    check_appendable(cfg.log.access_log, cfg.log.access_log_source, "access_log", out);
  }
  if (!cfg.pid_file.empty()) check_pid_dir(cfg, out);
  return out;
}

}  // namespace turnpike::config
