// Node files (upstream `nodes_file`): an upstream's nodes, one per line, read at load and again
// whenever the file changes (server/node_files.h), so a rolling update rewrites a short text file
// instead of the whole config. A line is parsed without yaml-cpp: a 2,000-node list is read in
// under a millisecond, where the same nodes in YAML take a few milliseconds to parse.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <unordered_set>

#include "sections.h"

namespace turnpike::config {

namespace {

constexpr size_t kMaxNodeFile = 16u << 20;  // 16 MiB: some 500,000 nodes

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// The next word of `line` from `pos` (words are separated by spaces or tabs; "#" starts a comment).
std::string_view next_word(std::string_view line, size_t& pos) {
  while (pos < line.size() && is_space(line[pos])) ++pos;
  if (pos == line.size() || line[pos] == '#') return {};
  const size_t start = pos;
  while (pos < line.size() && !is_space(line[pos])) ++pos;
  return line.substr(start, pos - start);
}

// One "key=value" word into `node`; a message when it is wrong.
std::string apply_option(std::string_view word, UpstreamNodeConfig& node, bool& weight_set) {
  const size_t eq = word.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return detail::quote(word) + " is not an option: use weight=N, zone=NAME or tags=A,B";
  }
  const std::string_view key = word.substr(0, eq), value = word.substr(eq + 1);
  if (key == "weight") {
    uint32_t w = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), w);
    if (ec != std::errc() || end != value.data() + value.size() || w < 1 || w > 10'000) {
      return "weight " + detail::quote(value) + " is not an integer 1..10000";
    }
    if (node.srv) return "weight: a service's SRV records give the weights";
    node.weight = w;
    weight_set = true;
    return {};
  }
  if (key == "zone") {
    if (!detail::valid_tag(value)) {
      return "zone " + detail::quote(value) + " is not a zone (" + std::string(detail::kTagRule) + ")";
    }
    node.zone = std::string(value);
    return {};
  }
  if (key == "tags") {
    node.tags.clear();
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      if (comma == std::string_view::npos) comma = value.size();
      const std::string_view tag = value.substr(start, comma - start);
      if (!detail::valid_tag(tag)) {
        return "tag " + detail::quote(tag) + " is not a tag (" + std::string(detail::kTagRule) + ")";
      }
      node.tags.emplace_back(tag);
      start = comma + 1;
    }
    return {};
  }
  return "unknown option " + detail::quote(key) + ": use weight=N, zone=NAME or tags=A,B";
}

}  // namespace

bool parse_node_file(std::string_view text, const std::string& path, std::vector<UpstreamNodeConfig>& nodes,
                     std::vector<ConfigError>& errors) {
  const size_t errors_before = errors.size();
  nodes.clear();
  const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  nodes.reserve(lines);
  // Each node's identity (its host, and its port or 0x10000 for a service), to find one listed
  // twice. The host is viewed where the node is kept: `nodes` never grows past its reserve.
  struct Identity {
    std::string_view host;
    uint32_t port;
    bool operator==(const Identity&) const = default;
  };
  struct Hash {
    size_t operator()(const Identity& i) const noexcept {
      return std::hash<std::string_view>()(i.host) ^ (size_t{i.port} * 0x9e3779b97f4a7c15ull);
    }
  };
  std::unordered_set<Identity, Hash> seen;
  seen.reserve(lines);
  int line_no = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t eol = text.find('\n', at);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = text.substr(at, eol - at);
    at = eol + 1;
    ++line_no;
    size_t pos = 0;
    const std::string_view address = next_word(line, pos);
    if (address.empty()) continue;  // blank or a comment
    auto fail = [&](std::string message) { errors.push_back({path, line_no, std::move(message)}); };
    UpstreamNodeConfig node;
    node.source = {path, line_no};
    if (address.starts_with(detail::kSrvScheme)) {
      node.host = std::string(address.substr(detail::kSrvScheme.size()));
      node.srv = true;
    } else {
      std::optional<int64_t> port;
      std::string why;
      if (!detail::parse_host_port(address, node.host, port, why)) {
        fail(detail::quote(address) + " " + why);
        continue;
      }
      if (port) node.port = static_cast<uint16_t>(*port);
    }
    if (std::string why = detail::node_host_error(node); !why.empty()) {
      fail(std::move(why));
      continue;
    }
    bool ok = true, weight_set = false;
    for (std::string_view word = next_word(line, pos); !word.empty(); word = next_word(line, pos)) {
      if (std::string why = apply_option(word, node, weight_set); !why.empty()) {
        fail(std::move(why));
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    nodes.push_back(std::move(node));
    const UpstreamNodeConfig& kept = nodes.back();
    if (!seen.insert({kept.host, kept.srv ? 0x10000u : kept.port}).second) {
      fail("node " + detail::node_identity(kept) + " is listed twice (use weight instead)");
      nodes.pop_back();
    }
  }
  if (errors.size() != errors_before) return false;
  if (nodes.empty()) {
    errors.push_back({path, 0, "no nodes: at least one is required (one \"host:port\" per line)"});
    return false;
  }
  const bool tagged = std::any_of(nodes.begin(), nodes.end(), [](const auto& n) { return !n.tags.empty(); });
  if (tagged && nodes.size() > 64) {
    errors.push_back({path, 0, "an upstream with tagged nodes may have at most 64 nodes"});
    return false;
  }
  return true;
}

bool read_node_file(const std::string& path, std::vector<UpstreamNodeConfig>& nodes, std::vector<ConfigError>& errors) {
  std::string text, error;
  if (!read_small_file(path, kMaxNodeFile, text, error)) {
    errors.push_back({path, 0, error});
    return false;
  }
  return parse_node_file(text, path, nodes, errors);
}

bool read_small_file(const std::string& path, size_t max_size, std::string& text, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::string("cannot read: ") + std::strerror(errno);
    return false;
  }
  text.clear();
  struct stat st;
  if (::fstat(fd, &st) == 0 && st.st_size > 0 && static_cast<size_t>(st.st_size) <= max_size) {
    text.reserve(static_cast<size_t>(st.st_size));  // (one allocation, not a doubling per 16 KiB)
  }
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::string("cannot read: ") + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > max_size) {
      error = "cannot read: larger than " + std::to_string(max_size >> 20) + " MiB";
      ::close(fd);
      return false;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

}  // namespace turnpike::config
