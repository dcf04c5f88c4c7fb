// The process: loads the config, opens listeners, runs the workers, and handles signals —
// SIGHUP reload, SIGTERM/SIGINT graceful drain, SIGUSR1 log reopen.
#pragma once

#include <string>
#include <vector>

namespace turnpike::proxy {

struct ServerOptions {
  std::string config_path;
  std::string ready_file;     // JSON status written after start and after every reload attempt
  unsigned workers = 0;       // 0: from the config
  std::vector<std::string> argv;  // the command line, given again to the new process of an upgrade
};

// Runs until a drain completes. Returns the process exit code.
int run_server(const ServerOptions& options);

}  // namespace turnpike::proxy
