// turnpike: command line entry point.
//
//   turnpike -c FILE [--ready-file PATH] [--workers N]   run in the foreground
//   turnpike -t -c FILE                                  validate FILE and exit (0 valid, 1 not)
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "memory.h"
#include "turnpike/config/config.h"
#include "turnpike/proxy/server.h"
#include "turnpike/proxy/snapshot.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: turnpike [-t] -c FILE [--ready-file PATH] [--workers N]\n"
               "  -c, --config FILE    configuration file (default conf/turnpike.yaml)\n"
               "  -t, --test           validate the configuration and exit\n"
               "  --ready-file PATH    write JSON status (listeners, generation) after start and reloads\n"
               "  --workers N          override the configured number of workers\n"
               "signals: HUP reload, TERM/INT graceful drain, USR1 reopen logs\n");
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
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "turnpike: unknown argument %s\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }

  if (test_only) {
    auto loaded = turnpike::config::load_config_file(options.config_path);
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    if (!loaded.config) return 1;
    // Also what a start would check: upstream hosts resolve, every listener's routes build.
    std::vector<turnpike::config::ConfigError> errors;
    if (!turnpike::proxy::Snapshot::build(loaded.config, 1, errors)) {
      for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
      return 1;
    }
    std::printf("configuration %s is valid\n", options.config_path.c_str());
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);
  return turnpike::proxy::run_server(options);
}
