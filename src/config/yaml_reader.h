// Typed, error-collecting reads of yaml-cpp nodes: the vocabulary the config loader is written in.
//
// Nothing here throws or stops at the first problem: every reader reports what is wrong through a
// Where (which says where in the document the node sits, for the message) into one Diagnostics,
// and returns nullopt so the caller can keep its default and go on checking the rest.
// Private to src/config/.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "turnpike/config/config.h"

namespace turnpike::config::detail {

// 1-based line of a node; 0 when yaml-cpp does not know it.
int line_of(const YAML::Node& node);

// Every error found while loading one file.
class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}
  const std::string& file() const { return file_; }
  void add(int line, std::string message);
  // An error in another file the config names (a node file): listed after the config's own.
  void add_elsewhere(ConfigError error) { errors_.push_back(std::move(error)); }
  bool empty() const { return errors_.empty(); }
  // The errors in file order (by line; equal lines keep the order they were found in).
  std::vector<ConfigError> take_sorted();

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
};

// A position in the document, rendered as a message prefix: an item (`route "api"`) and a path
// inside it (`match.headers[2].name`). Positions in lists count from 1, as people do.
class Where {
 public:
  Where(Diagnostics& diag, std::string item, std::string path = {})
      : diag_(&diag), item_(std::move(item)), path_(std::move(path)) {}

  Where key(std::string_view k) const;
  Where index(size_t zero_based) const;
  // The same path under another item name (once a list item's name is known).
  Where item(std::string name) const { return Where(*diag_, std::move(name), path_); }

  std::string text() const;  // `route "api": match.paths`; may be empty at the top level
  void error(const YAML::Node& at, std::string_view problem) const;
  void error_at_line(int line, std::string_view problem) const;
  SourceRef source(const YAML::Node& node) const { return {diag_->file(), line_of(node)}; }
  Diagnostics& diag() const { return *diag_; }

 private:
  Diagnostics* diag_;
  std::string item_;
  std::string path_;
};

// How a node looks, for "expected X, got Y": `"text"`, "a list", "a mapping", "an empty value".
std::string describe(const YAML::Node& node);
// `"text"` with control characters escaped and long text shortened.
std::string quote(std::string_view s);

bool expect_map(const Where& w, const YAML::Node& node);
bool expect_list(const Where& w, const YAML::Node& node);
// Reports keys that are not in `allowed` (suggesting the nearest allowed one), keys that appear
// twice (yaml-cpp would silently keep the first) and keys that are not plain strings.
void check_keys(const Where& w, const YAML::Node& map, std::initializer_list<std::string_view> allowed);

std::optional<std::string> read_string(const Where& w, const YAML::Node& node);
std::optional<int64_t> read_int(const Where& w, const YAML::Node& node, int64_t min, int64_t max);
std::optional<bool> read_bool(const Where& w, const YAML::Node& node);
std::optional<Duration> read_duration(const Where& w, const YAML::Node& node, Duration min);
std::optional<uint64_t> read_size(const Where& w, const YAML::Node& node, uint64_t min, uint64_t max);
// A list of strings; nullopt when the node is not a list (items that are not strings are
// reported and skipped).
std::optional<std::vector<std::pair<std::string, YAML::Node>>> read_string_list(
    const Where& w, const YAML::Node& node);

// Field readers: when `map` has `key`, read it into `out`; otherwise leave `out` (the default).
void field(const Where& w, const YAML::Node& map, const char* key, std::string& out);
void field(const Where& w, const YAML::Node& map, const char* key, bool& out);
void field_duration(const Where& w, const YAML::Node& map, const char* key, Duration& out,
                    Duration min);
void field_size(const Where& w, const YAML::Node& map, const char* key, uint64_t& out,
                uint64_t min, uint64_t max);

template <class T>
void field_int(const Where& w, const YAML::Node& map, const char* key, T& out, int64_t min,
               int64_t max) {
  if (const YAML::Node n = map[key]) {
    if (std::optional<int64_t> v = read_int(w.key(key), n, min, max)) out = static_cast<T>(*v);
  }
}

}  // namespace turnpike::config::detail
