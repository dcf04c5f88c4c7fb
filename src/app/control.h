// Asking a running turnpike to reload or upgrade, and saying how it went (the exit code is what
// `systemctl reload` reports):
//
//   turnpike --reload -c FILE [--admin ADDR:PORT] [--pid PID]
//     POST /reload on the admin listener FILE configures (with its token); every error of a
//     refused reload printed, exit 1. Without an admin listener: SIGHUP to PID (or the pid_file's),
//     whose result only the log tells.
//   turnpike --upgrade -c FILE [--admin ADDR:PORT]
//     POST /upgrade, then /status until a new pid serves (exit 0) or the upgrade failed (exit 1).
#pragma once

#include <string>

namespace turnpike::app {

struct ControlOptions {
  std::string config_path;
  std::string admin;  // "ADDR:PORT" overriding the config's admin listener ("" : the config's)
  long pid = 0;       // the process to SIGHUP without an admin listener (0: the pid_file's)
};

int reload_running(const ControlOptions& options);
int upgrade_running(const ControlOptions& options);

}  // namespace turnpike::app
