// turnpike: command line entry point.
//
//   turnpike -c FILE [--ready-file PATH] [--workers N]   run in the foreground
//   turnpike -t -c FILE                                  validate FILE and exit (0 valid, 1 not)
//   turnpike --version                                   version and git commit
//   turnpike --reload -c FILE [--admin A:P] [--pid PID]  reload the running one; exit 1 if refused
//   turnpike --upgrade -c FILE [--admin A:P]             hand the running one's sockets to the binary on disk
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "control.h"
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
               "  --reload             ask the running turnpike (its admin listener, else SIGHUP) to reload FILE;\n"
               "                       prints every error and exits 1 when the reload is refused\n"
               "  --upgrade            ask the running turnpike to hand its sockets to the binary on disk;\n"
               "                       exits 0 once the new process serves, 1 when the old one serves on\n"
               "  --admin ADDR:PORT    the admin listener --reload/--upgrade ask (default: FILE's admin.listen)\n"
               "  --pid PID            the process --reload signals without an admin listener (default: pid_file)\n"
               "signals: HUP reload, TERM/INT graceful drain, USR1 reopen logs, USR2 binary upgrade\n");
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
  enum class Control { none, reload, upgrade } control = Control::none;
  turnpike::app::ControlOptions control_options;
  options.argv.assign(argv, argv + argc);
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
    } else if (a == "--reload") {
      control = Control::reload;
    } else if (a == "--upgrade") {
      control = Control::upgrade;
    } else if (a == "--admin") {
      control_options.admin = value("--admin");
    } else if (a == "--pid") {
      control_options.pid = std::atol(value("--pid"));
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
  control_options.config_path = options.config_path;
  if (control == Control::reload) return turnpike::app::reload_running(control_options);
  if (control == Control::upgrade) return turnpike::app::upgrade_running(control_options);
  std::signal(SIGPIPE, SIG_IGN);
  return turnpike::proxy::run_server(options);
}
