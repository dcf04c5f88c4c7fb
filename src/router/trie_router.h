// Internal: the data a built Router holds, and the Router implementation over it.
//
// Layout: each host key (one exact host, one wildcard suffix, or "any host") owns the root of a
// segment trie. A node's static children live in one shared SegmentTable keyed by (node, segment);
// it has at most one {param} child. Each node lists the candidates (rule × host × path) whose path
// ends there, split into those that need the path to end here (exact) and those that also take
// anything below (prefix, "/*"), each list sorted best first. Every node also records the best
// rank found anywhere in its subtree, so the search can skip subtrees that cannot win.
#pragma once

#include <compare>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "segment_table.h"
#include "turnpike/router/router.h"

namespace turnpike::router::detail {

// A candidate's place in the selection order of router.h, packed so that comparing the words
// lexicographically gives that order: the greater Rank wins.
//   words[0]: priority (biased to unsigned) | host rank (exact > longer wildcard suffix > any)
//   words[1]: path kind (exact > pattern > prefix) | count of literal segments
//   words[2]: literal-segment mask, first segment in the top bit (an earlier literal wins)
//   words[3]: no trailing "/*" | segment count | has a method list | header condition count |
//             ~route_index (the lower index wins)
struct Rank {
  uint64_t words[4] = {0, 0, 0, 0};
  friend auto operator<=>(const Rank&, const Rank&) = default;
};

// Namespaces of the host keys in the shared SegmentTable; trie node ids stay below them.
inline constexpr uint32_t kExactHostNs = UINT32_MAX - 1;
inline constexpr uint32_t kWildcardHostNs = UINT32_MAX - 2;
inline constexpr uint32_t kMaxNodes = UINT32_MAX - 3;

struct CompiledCondition {
  std::string_view name;  // lower-case
  HeaderCondition::Op op = HeaderCondition::Op::equals;
  std::string_view value;
};

// The parts of a RouteRule checked after its host and path matched.
struct CompiledRule {
  uint32_t route_index = 0;
  uint32_t method_mask = 0;  // 0: any method
  uint32_t first_condition = 0;
  uint32_t condition_count = 0;
};

// One (rule, host, path) combination, stored at the trie node where its path ends.
struct Candidate {
  Rank rank;
  uint32_t rule = 0;               // index into RouteTable::rules
  uint32_t first_param_name = 0;   // index into RouteTable::param_names
  uint32_t param_count = 0;        // equals the number of {param} nodes above this one
};

struct Span {
  uint32_t begin = 0;
  uint32_t end = 0;
};

struct Node {
  Rank best;                      // the best rank of any candidate in this subtree
  uint32_t param_child = kNoId;   // the {param} child, if any
  Span exact;                     // candidates matching only when the path ends here
  Span prefix;                    // candidates matching here and anywhere below ("/*")
};

struct RouteTable {
  std::vector<Node> nodes;
  std::vector<Candidate> candidates;  // grouped by node and list, each group best first
  std::vector<CompiledRule> rules;
  std::vector<CompiledCondition> conditions;
  std::vector<std::string_view> param_names;
  SegmentTable keys;                  // trie edges and host roots
  uint32_t any_host_root = kNoId;
  size_t max_wildcard_suffix = 0;     // longest wildcard suffix; 0 when there is none
  size_t rule_count = 0;
  std::deque<std::string> strings;    // owns every view above; a deque never moves its elements
};

class TrieRouter final : public Router {
 public:
  explicit TrieRouter(RouteTable table) : table_(std::move(table)) {}
  void match(const MatchInput& input, MatchResult& result) const noexcept override;
  size_t rule_count() const noexcept override { return table_.rule_count; }

 private:
  RouteTable table_;
};

}  // namespace turnpike::router::detail
