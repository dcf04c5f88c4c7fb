// Router::build: turns RouteRules into the host tables and segment tries of trie_router.h.
// Runs once per config snapshot; allocation and exceptions are fine here.
#include <algorithm>
#include <memory>

#include "route_syntax.h"
#include "trie_router.h"
#include "turnpike/common/strings.h"

namespace turnpike::router {
namespace detail {
namespace {

// Host part of the rank: an exact host beats any wildcard, a longer wildcard suffix beats a
// shorter one (two suffixes matching one host are nested, so longer means more labels), and any
// wildcard beats "any host".
constexpr uint32_t kExactHostRank = UINT32_MAX;
constexpr uint32_t kAnyHostRank = 0;

constexpr uint64_t kPathExact = 2;
constexpr uint64_t kPathPattern = 1;
constexpr uint64_t kPathPrefix = 0;

uint64_t clamp(uint64_t v, uint64_t max) { return v < max ? v : max; }

Rank rank_of(const RouteRule& rule, uint32_t host_rank, const ParsedPath& path) {
  uint64_t literal_count = 0;
  uint64_t literal_mask = 0;
  for (size_t i = 0; i < path.segments.size(); ++i) {
    if (path.segments[i].is_param) continue;
    ++literal_count;
    if (i < 64) literal_mask |= uint64_t{1} << (63 - i);
  }
  uint64_t kind = path.kind == PathKind::exact     ? kPathExact
                  : path.kind == PathKind::pattern ? kPathPattern
                                                   : kPathPrefix;
  uint32_t biased_priority = static_cast<uint32_t>(rule.priority) ^ 0x80000000u;

  Rank r;
  r.words[0] = uint64_t{biased_priority} << 32 | host_rank;
  r.words[1] = kind << 32 | clamp(literal_count, UINT32_MAX);
  r.words[2] = literal_mask;
  r.words[3] = uint64_t{!path.ends_with_star} << 63 |
               clamp(path.segments.size(), 0x7FFF) << 48 |
               uint64_t{rule.method_mask != 0} << 47 |
               clamp(rule.headers.size(), 0x7FFF) << 32 |
               uint64_t{~rule.route_index};
  return r;
}

class Builder {
 public:
  bool add(const RouteRule& rule, std::string& error);
  RouteTable finish(size_t rule_count);

 private:
  std::string_view intern(std::string_view s) { return table_.strings.emplace_back(s); }
  uint32_t new_node(uint32_t parent);
  uint32_t root_for(const ParsedHost* host);  // nullptr: any host
  uint32_t node_for(uint32_t root, const ParsedPath& path);

  RouteTable table_;
  // Build-only, indexed by node id (a child always has a larger id than its parent).
  std::vector<uint32_t> parent_;
  std::vector<std::vector<Candidate>> exact_;
  std::vector<std::vector<Candidate>> prefix_;
};

uint32_t Builder::new_node(uint32_t parent) {
  if (table_.nodes.size() >= kMaxNodes) throw std::length_error("router: too many trie nodes");
  table_.nodes.emplace_back();
  parent_.push_back(parent);
  exact_.emplace_back();
  prefix_.emplace_back();
  return static_cast<uint32_t>(table_.nodes.size() - 1);
}

uint32_t Builder::root_for(const ParsedHost* host) {
  if (host == nullptr) {
    if (table_.any_host_root == kNoId) table_.any_host_root = new_node(kNoId);
    return table_.any_host_root;
  }
  uint32_t ns = host->is_wildcard ? kWildcardHostNs : kExactHostNs;
  uint32_t root = table_.keys.find(ns, host->name);
  if (root != kNoId) return root;
  root = new_node(kNoId);
  table_.keys.insert(ns, intern(host->name), root);
  if (host->is_wildcard) {
    table_.max_wildcard_suffix = std::max(table_.max_wildcard_suffix, host->name.size());
  }
  return root;
}

uint32_t Builder::node_for(uint32_t root, const ParsedPath& path) {
  uint32_t node = root;
  for (const PathSegment& segment : path.segments) {
    if (segment.is_param) {
      if (table_.nodes[node].param_child == kNoId) {
        uint32_t child = new_node(node);
        table_.nodes[node].param_child = child;
      }
      node = table_.nodes[node].param_child;
      continue;
    }
    uint32_t child = table_.keys.find(node, segment.text);
    if (child == kNoId) {
      child = new_node(node);
      table_.keys.insert(node, intern(segment.text), child);
    }
    node = child;
  }
  return node;
}

bool Builder::add(const RouteRule& rule, std::string& error) {
  std::string context = "route " + std::to_string(rule.route_index) + ": ";

  std::vector<ParsedHost> hosts(rule.hosts.size());
  for (size_t i = 0; i < rule.hosts.size(); ++i) {
    if (!parse_host(rule.hosts[i], hosts[i], error)) {
      error.insert(0, context);
      return false;
    }
  }
  // An empty path list means "/*"; parse_path's views point into `paths`, so keep it alive.
  std::vector<std::string> paths = rule.paths;
  if (paths.empty()) paths.emplace_back("/*");
  std::vector<ParsedPath> parsed_paths(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    if (!parse_path(paths[i], parsed_paths[i], error)) {
      error.insert(0, context);
      return false;
    }
  }

  CompiledRule compiled;
  compiled.route_index = rule.route_index;
  compiled.method_mask = rule.method_mask;
  compiled.first_condition = static_cast<uint32_t>(table_.conditions.size());
  compiled.condition_count = static_cast<uint32_t>(rule.headers.size());
  for (const HeaderCondition& condition : rule.headers) {
    if (condition.name.empty()) {
      error = context + "a header condition has an empty name";
      return false;
    }
    table_.conditions.push_back(
        {intern(to_lower_copy(condition.name)), condition.op, intern(condition.value)});
  }
  uint32_t rule_id = static_cast<uint32_t>(table_.rules.size());
  table_.rules.push_back(compiled);

  auto add_host = [&](const ParsedHost* host) {
    uint32_t host_rank = host == nullptr        ? kAnyHostRank
                         : !host->is_wildcard   ? kExactHostRank
                                                : static_cast<uint32_t>(host->name.size() + 1);
    uint32_t root = root_for(host);
    for (const ParsedPath& path : parsed_paths) {
      Candidate candidate;
      candidate.rank = rank_of(rule, host_rank, path);
      candidate.rule = rule_id;
      candidate.first_param_name = static_cast<uint32_t>(table_.param_names.size());
      for (const PathSegment& segment : path.segments) {
        if (!segment.is_param) continue;
        table_.param_names.push_back(intern(segment.text));
        ++candidate.param_count;
      }
      uint32_t node = node_for(root, path);
      (path.ends_with_star ? prefix_ : exact_)[node].push_back(candidate);
    }
  };
  if (hosts.empty()) add_host(nullptr);
  for (const ParsedHost& host : hosts) add_host(&host);
  return true;
}

RouteTable Builder::finish(size_t rule_count) {
  auto better = [](const Candidate& a, const Candidate& b) { return a.rank > b.rank; };
  auto flatten = [&](std::vector<Candidate>& list, Span& span, Rank& best) {
    std::stable_sort(list.begin(), list.end(), better);
    span.begin = static_cast<uint32_t>(table_.candidates.size());
    table_.candidates.insert(table_.candidates.end(), list.begin(), list.end());
    span.end = static_cast<uint32_t>(table_.candidates.size());
    if (!list.empty()) best = std::max(best, list.front().rank);
  };
  // Children have larger ids than their parents, so one backwards pass settles every subtree
  // before its best rank is folded into the parent.
  for (size_t id = table_.nodes.size(); id-- > 0;) {
    Node& node = table_.nodes[id];
    flatten(exact_[id], node.exact, node.best);
    flatten(prefix_[id], node.prefix, node.best);
    if (parent_[id] != kNoId) {
      Rank& parent_best = table_.nodes[parent_[id]].best;
      parent_best = std::max(parent_best, node.best);
    }
  }
  table_.rule_count = rule_count;
  return std::move(table_);
}

}  // namespace
}  // namespace detail

std::unique_ptr<const Router> Router::build(std::vector<RouteRule> rules, std::string& error) {
  detail::Builder builder;
  for (const RouteRule& rule : rules) {
    if (!builder.add(rule, error)) return nullptr;
  }
  return std::make_unique<detail::TrieRouter>(builder.finish(rules.size()));
}

}  // namespace turnpike::router
