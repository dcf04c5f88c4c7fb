// Typed, error-collecting reads of yaml-cpp nodes (see yaml_reader.h).
#include "yaml_reader.h"

#include <algorithm>
#include <charconv>

#include "turnpike/common/strings.h"

namespace turnpike::config::detail {

int line_of(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  YAML::Mark m = node.Mark();
  return m.is_null() ? 0 : m.line + 1;  // yaml-cpp counts lines from 0
}

// ---------------------------------------------------------------------------------------------
// Diagnostics and Where
// ---------------------------------------------------------------------------------------------

void Diagnostics::add(int line, std::string message) {
  errors_.push_back(ConfigError{file_, line, std::move(message)});
}

std::vector<ConfigError> Diagnostics::take_sorted() {
  // The config's own errors by line, then those of other files in the order they were found.
  std::stable_sort(errors_.begin(), errors_.end(), [this](const ConfigError& a, const ConfigError& b) {
    const bool a_here = a.file == file_, b_here = b.file == file_;
    if (a_here != b_here) return a_here;
    return a_here && a.line < b.line;
  });
  return std::move(errors_);
}

Where Where::key(std::string_view k) const {
  std::string p = path_;
  if (!p.empty()) p += '.';
  p += k;
  return Where(*diag_, item_, std::move(p));
}

Where Where::index(size_t zero_based) const {
  return Where(*diag_, item_, path_ + "[" + std::to_string(zero_based + 1) + "]");
}

std::string Where::text() const {
  if (item_.empty()) return path_;
  if (path_.empty()) return item_;
  return item_ + ": " + path_;
}

void Where::error(const YAML::Node& at, std::string_view problem) const {
  error_at_line(line_of(at), problem);
}

void Where::error_at_line(int line, std::string_view problem) const {
  std::string t = text();
  if (t.empty()) {
    diag_->add(line, std::string(problem));
  } else {
    diag_->add(line, t + ": " + std::string(problem));
  }
}

// ---------------------------------------------------------------------------------------------
// Describing nodes
// ---------------------------------------------------------------------------------------------

std::string quote(std::string_view s) {
  constexpr size_t kMaxShown = 60;
  std::string out = "\"";
  size_t shown = 0;
  for (char c : s) {
    if (++shown > kMaxShown) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar: return quote(node.Scalar());
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Null: return "an empty value";
    case YAML::NodeType::Undefined: break;
  }
  return "nothing";
}

namespace {

std::string format_size(uint64_t v) {
  static constexpr struct { unsigned shift; char suffix; } kUnits[] = {{30, 'g'}, {20, 'm'}, {10, 'k'}};
  for (const auto& u : kUnits) {
    if (v != 0 && v % (uint64_t{1} << u.shift) == 0) return std::to_string(v >> u.shift) + u.suffix;
  }
  return std::to_string(v);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Structure
// ---------------------------------------------------------------------------------------------

bool expect_map(const Where& w, const YAML::Node& node) {
  if (node.IsMap()) return true;
  w.error(node, "expected a mapping, got " + describe(node));
  return false;
}

bool expect_list(const Where& w, const YAML::Node& node) {
  if (node.IsSequence()) return true;
  w.error(node, "expected a list, got " + describe(node));
  return false;
}

void check_keys(const Where& w, const YAML::Node& map,
                std::initializer_list<std::string_view> allowed) {
  std::vector<std::string_view> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node k = it->first;  // a copy: it-> points into a temporary
    if (!k.IsScalar()) {
      w.error(k, "a key must be a plain string, got " + describe(k));
      continue;
    }
    const std::string& name = k.Scalar();
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      w.error(k, "key " + quote(name) + " appears more than once");
      continue;
    }
    seen.push_back(name);
    if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
    std::string msg = "unknown key " + quote(name);
    if (std::string_view guess = nearest_name(name, std::span<const std::string_view>(allowed.begin(), allowed.size())); !guess.empty()) {
      msg += " (did you mean " + quote(guess) + "?)";
    }
    w.error(k, msg);
  }
}

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

std::optional<std::string> read_string(const Where& w, const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  w.error(node, "expected a string, got " + describe(node));
  return std::nullopt;
}

std::optional<int64_t> read_int(const Where& w, const YAML::Node& node, int64_t min,
                                int64_t max) {
  if (!node.IsScalar()) {
    w.error(node, "expected an integer, got " + describe(node));
    return std::nullopt;
  }
  const std::string& s = node.Scalar();
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range) {
    w.error(node, s + " is out of range (" + std::to_string(min) + ".." + std::to_string(max) + ")");
    return std::nullopt;
  }
  if (ec != std::errc() || end != s.data() + s.size()) {
    w.error(node, "expected an integer, got " + describe(node));
    return std::nullopt;
  }
  if (v < min || v > max) {
    w.error(node, s + " is out of range (" + std::to_string(min) + ".." + std::to_string(max) + ")");
    return std::nullopt;
  }
  return v;
}

std::optional<bool> read_bool(const Where& w, const YAML::Node& node) {
  if (node.IsScalar()) {
    // YAML 1.2 core schema spellings.
    const std::string& s = node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  w.error(node, "expected true or false, got " + describe(node));
  return std::nullopt;
}

std::optional<Duration> read_duration(const Where& w, const YAML::Node& node, Duration min) {
  std::optional<Duration> d;
  if (node.IsScalar()) d = parse_duration(node.Scalar());
  if (!d) {
    w.error(node, "expected a duration such as \"10s\", \"250ms\", \"2m\" or \"1h\", got " +
                      describe(node));
    return std::nullopt;
  }
  if (*d < min) {
    w.error(node, min.count() == 1 ? std::string("must be greater than 0")
                                   : "must be at least " + std::to_string(min.count()) + "ms");
    return std::nullopt;
  }
  return d;
}

std::optional<uint64_t> read_size(const Where& w, const YAML::Node& node, uint64_t min,
                                  uint64_t max) {
  std::optional<uint64_t> v;
  if (node.IsScalar()) v = parse_size(node.Scalar());
  if (!v) {
    w.error(node, "expected a size such as \"512\", \"8k\", \"1m\" or \"2g\", got " +
                      describe(node));
    return std::nullopt;
  }
  if (*v < min || *v > max) {
    w.error(node, node.Scalar() + " is out of range (" + format_size(min) + ".." +
                      format_size(max) + ")");
    return std::nullopt;
  }
  return v;
}

std::optional<std::vector<std::pair<std::string, YAML::Node>>> read_string_list(
    const Where& w, const YAML::Node& node) {
  if (!expect_list(w, node)) return std::nullopt;
  std::vector<std::pair<std::string, YAML::Node>> out;
  size_t i = 0;
  for (auto it = node.begin(); it != node.end(); ++it, ++i) {
    if (std::optional<std::string> s = read_string(w.index(i), *it)) out.emplace_back(*s, *it);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fields
// ---------------------------------------------------------------------------------------------

void field(const Where& w, const YAML::Node& map, const char* key, std::string& out) {
  if (const YAML::Node n = map[key]) {
    if (std::optional<std::string> v = read_string(w.key(key), n)) out = std::move(*v);
  }
}

void field(const Where& w, const YAML::Node& map, const char* key, bool& out) {
  if (const YAML::Node n = map[key]) {
    if (std::optional<bool> v = read_bool(w.key(key), n)) out = *v;
  }
}

void field_duration(const Where& w, const YAML::Node& map, const char* key, Duration& out,
                    Duration min) {
  if (const YAML::Node n = map[key]) {
    if (std::optional<Duration> v = read_duration(w.key(key), n, min)) out = *v;
  }
}

void field_size(const Where& w, const YAML::Node& map, const char* key, uint64_t& out,
                uint64_t min, uint64_t max) {
  if (const YAML::Node n = map[key]) {
    if (std::optional<uint64_t> v = read_size(w.key(key), n, min, max)) out = *v;
  }
}

}  // namespace turnpike::config::detail
