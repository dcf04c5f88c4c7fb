// turnpike: command line entry point.
//
//   turnpike -c FILE [--ready-file PATH] [--workers N]   run in the foreground
//   turnpike -t -c FILE                                  validate FILE and exit (0 valid, 1 not)
//   turnpike --version                                   version and git commit
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "memory.h"
#include "turnpike/common/version.h"
#include "turnpike/config/config.h"
#include "turnpike/server/server.h"
#include "turnpike/proxy/snapshot.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: turnpike [-t] -c FILE [--ready-file PATH] [--workers N]\n"
               "  -c, --config FILE    configuration file (default conf/turnpike.yaml)\n"
               "  -t, --test           validate the configuration and exit\n"
               "  --ready-file PATH    write JSON status (listeners, generation) after start and reloads\n"
               "  --workers N          override the configured number of workers\n"
               "  -V, --version        print the version and the git commit, and exit\n"
               "signals: HUP reload, TERM/INT graceful drain, USR1 reopen logs\n");
}

void print(const std::vector<turnpike::config::ConfigError>& list) {
  for (const auto& e : list) std::fprintf(stderr, "%s\n", e.to_string().c_str());
}

// -t: what a start would check, short of binding the listeners: the file loads, upstream hosts
// resolve, every listener's routes and TLS contexts build, the log files open for appending.
// Warnings are printed but do not fail the test.
int test_config(const std::string& path) {
  auto loaded = turnpike::config::load_config_file(path);
  print(loaded.errors);
  if (!loaded.config) return 1;
  std::vector<turnpike::config::ConfigError> errors;
  turnpike::proxy::Snapshot::build(loaded.config, 1, errors);
  std::vector<turnpike::config::ConfigError> file_errors = turnpike::config::check_files(*loaded.config);
  errors.insert(errors.end(), file_errors.begin(), file_errors.end());
  print(errors);
  print(loaded.warnings);
  if (!errors.empty()) return 1;
  std::printf("configuration %s is valid%s\n", path.c_str(),
              loaded.warnings.empty() ? "" : " (with warnings)");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // First, before anything can make OpenSSL allocate.
  if (!turnpike::app::route_openssl_allocations()) {
    std::fprintf(stderr, "turnpike: note: OpenSSL allocated before startup; it keeps plain malloc\n");
  }
  turnpike::proxy::ServerOptions options;
  options.config_path = "conf/turnpike.yaml";
  bool test_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "turnpike: %s needs a value\n", what);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-c" || a == "--config") {
      options.config_path = value("-c");
    } else if (a == "-t" || a == "--test") {
      test_only = true;
    } else if (a == "--ready-file") {
      options.ready_file = value("--ready-file");
    } else if (a == "--workers") {
      int n = std::atoi(value("--workers"));
      if (n < 1 || n > 256) {
        std::fprintf(stderr, "turnpike: --workers must be 1..256\n");
        return 2;
      }
      options.workers = static_cast<unsigned>(n);
    } else if (a == "-V" || a == "--version") {
      std::printf("turnpike %.*s (commit %.*s)\n", static_cast<int>(turnpike::version().size()),
                  turnpike::version().data(), static_cast<int>(turnpike::git_commit().size()),
                  turnpike::git_commit().data());
      return 0;
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "turnpike: unknown argument %s\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }

  if (test_only) return test_config(options.config_path);
  std::signal(SIGPIPE, SIG_IGN);
  return turnpike::proxy::run_server(options);
}
