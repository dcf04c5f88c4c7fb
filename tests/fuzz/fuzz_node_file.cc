// libFuzzer target: the node-file parser (src/config/node_file.cc), which reads files that deploy
// tools write while the gateway serves. It must never crash or read past the text, and what it
// accepts must hold together: at least one node, each at a line of the text with a host, a weight
// in range and no node twice; the same text parses the same way again; and the nodes written back
// in the file's own syntax parse to the same nodes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "turnpike/config/config.h"

namespace {

using turnpike::config::ConfigError;
using turnpike::config::UpstreamNodeConfig;

std::string render(const std::vector<UpstreamNodeConfig>& nodes) {
  std::string out;
  for (const auto& n : nodes) {
    if (n.srv) {
      out += "srv://" + n.host;
    } else {
      out += n.host.find(':') != std::string::npos ? "[" + n.host + "]" : n.host;
      out += ":" + std::to_string(n.port);
      out += " weight=" + std::to_string(n.weight);
    }
    if (!n.zone.empty()) out += " zone=" + n.zone;
    for (size_t i = 0; i < n.tags.size(); ++i) out += (i ? "," : " tags=") + n.tags[i];
    out += "\n";
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy, so ASan sees any read past the text.
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<UpstreamNodeConfig> nodes;
  std::vector<ConfigError> errors;
  const bool ok = turnpike::config::parse_node_file(text, "nodes.txt", nodes, errors);
  FUZZ_CHECK(ok == errors.empty());
  if (!ok) {
    for (const auto& e : errors) FUZZ_CHECK(e.file == "nodes.txt" && !e.message.empty());
    return 0;
  }
  FUZZ_CHECK(!nodes.empty());
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  std::set<std::pair<std::string, uint32_t>> seen;
  for (const auto& n : nodes) {
    FUZZ_CHECK(!n.host.empty());
    FUZZ_CHECK(n.weight >= 1 && n.weight <= 10'000);
    FUZZ_CHECK(n.source.line >= 1 && n.source.line <= lines);
    FUZZ_CHECK(seen.insert({n.host, n.srv ? 0x10000u : n.port}).second);
  }
  std::vector<UpstreamNodeConfig> again;
  std::vector<ConfigError> errors_again;
  FUZZ_CHECK(turnpike::config::parse_node_file(text, "nodes.txt", again, errors_again));
  FUZZ_CHECK(again == nodes);
  // Written back and read: the same nodes (SourceRef compares equal whatever the line).
  std::vector<UpstreamNodeConfig> round;
  std::vector<ConfigError> errors_round;
  const std::string written = render(nodes);
  FUZZ_CHECK(turnpike::config::parse_node_file(written, "nodes.txt", round, errors_round));
  FUZZ_CHECK(round == nodes);
  return 0;
}
