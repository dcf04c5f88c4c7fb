// Router::match: finds the best rule for one request.
//
// Hot path: runs for every request on every worker thread. It allocates nothing, takes no lock
// and throws nothing; all state lives on the stack. Its cost is a hash lookup per host key tried
// and per path segment walked, plus the candidates inspected at the nodes reached, so it does not
// grow with the number of routes.
//
// Because priority outranks specificity, the best rule may sit in a less specific host table or
// trie position than the first match found. The search therefore visits every host table the
// host falls in (exact, then wildcard suffixes from the longest, then any host) and, in each, every
// trie position the path reaches (static child, then {param} child, then the node's own "/*"
// rules), keeping the best candidate so far. A subtree whose best rank cannot beat it is skipped.
// The recursion depth is bounded by the deepest rule path, whatever the request path is.
#include "trie_router.h"
#include "turnpike/common/strings.h"

namespace turnpike::router::detail {
namespace {

bool header_condition_holds(const CompiledCondition& c, const MatchInput& input) noexcept {
  for (size_t i = 0; i < input.header_count; ++i) {
    const http::Header& h = input.headers[i];
    if (!iequals(h.name, c.name)) continue;
    // A repeated field satisfies equals/prefix when any one of its lines does.
    switch (c.op) {
      case HeaderCondition::Op::equals:
        if (h.value == c.value) return true;
        break;
      case HeaderCondition::Op::prefix:
        if (h.value.starts_with(c.value)) return true;
        break;
      case HeaderCondition::Op::present:
        return true;
      case HeaderCondition::Op::absent:
        return false;
    }
  }
  return c.op == HeaderCondition::Op::absent;
}

class Search {
 public:
  Search(const RouteTable& table, const MatchInput& input) noexcept
      : table_(table), input_(input) {}

  // Searches the trie under `root` (one host key's table) for `path`.
  void search_host_table(uint32_t root) noexcept {
    if (root == kNoId) return;
    std::string_view path = input_.path;
    if (path.empty() || path.front() != '/') {
      // Not an origin-form path ("*", an authority): only the "/*" rules take it.
      consider(table_.nodes[root].prefix, 0);
      return;
    }
    // "/" is the root itself; any other path is walked as "/seg/seg...".
    visit(root, path == "/" ? std::string_view{} : path, 0);
  }

  void write(MatchResult& result) const noexcept {
    result.matched = best_ != nullptr;
    result.route_index = 0;
    result.param_count = 0;
    if (best_ == nullptr) return;
    result.route_index = table_.rules[best_->rule].route_index;
    result.param_count = best_->param_count;
    for (size_t i = 0; i < best_->param_count; ++i) {
      result.params[i] = {table_.param_names[best_->first_param_name + i], best_values_[i]};
    }
  }

 private:
  bool beats_best(const Rank& rank) const noexcept { return best_ == nullptr || rank > best_->rank; }

  // `rest` is what remains of the path below `node`: empty, or starting with '/'.
  // `depth` is the number of {param} values captured so far on this branch.
  void visit(uint32_t node_id, std::string_view rest, size_t depth) noexcept {
    const Node& node = table_.nodes[node_id];
    if (!beats_best(node.best)) return;
    if (rest.empty()) {
      consider(node.exact, depth);
      consider(node.prefix, depth);
      return;
    }
    size_t slash = rest.find('/', 1);
    std::string_view segment = rest.substr(1, slash == std::string_view::npos ? rest.npos : slash - 1);
    std::string_view below = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
    // An empty segment ("/a/" or "/a//b") matches no literal and no {param}; only "/*" rules here.
    if (!segment.empty()) {
      uint32_t child = table_.keys.find(node_id, segment);
      if (child != kNoId) visit(child, below, depth);
      if (node.param_child != kNoId && depth < kMaxPathParams) {
        values_[depth] = segment;
        visit(node.param_child, below, depth + 1);
      }
    }
    consider(node.prefix, depth);
  }

  // Takes the first candidate of a best-first list that beats the best so far and whose method
  // and header conditions hold.
  void consider(Span span, size_t depth) noexcept {
    for (uint32_t i = span.begin; i < span.end; ++i) {
      const Candidate& candidate = table_.candidates[i];
      if (!beats_best(candidate.rank)) return;
      if (!conditions_hold(table_.rules[candidate.rule])) continue;
      best_ = &candidate;
      for (size_t p = 0; p < depth; ++p) best_values_[p] = values_[p];
      return;
    }
  }

  bool conditions_hold(const CompiledRule& rule) const noexcept {
    if (rule.method_mask != 0 && (rule.method_mask & http::method_bit(input_.method)) == 0) {
      return false;
    }
    for (uint32_t i = 0; i < rule.condition_count; ++i) {
      if (!header_condition_holds(table_.conditions[rule.first_condition + i], input_)) return false;
    }
    return true;
  }

  const RouteTable& table_;
  const MatchInput& input_;
  const Candidate* best_ = nullptr;
  std::string_view values_[kMaxPathParams];       // {param} values on the current branch
  std::string_view best_values_[kMaxPathParams];  // {param} values of best_
};

}  // namespace

void TrieRouter::match(const MatchInput& input, MatchResult& result) const noexcept {
  Search search(table_, input);
  std::string_view host = input.host;
  if (!host.empty()) {
    search.search_host_table(table_.keys.find(kExactHostNs, host));
    if (table_.max_wildcard_suffix > 0) {
      // "*.example.com" matches any host ending in ".example.com" with at least one label
      // before it. Only suffixes as long as the longest configured one can hit, so an attacker's
      // long host costs no more than that window. Leftmost dot first: longest suffix first.
      size_t window = std::min(host.size(), table_.max_wildcard_suffix + 1);
      for (size_t dot = host.size() - window; dot < host.size(); ++dot) {
        if (host[dot] != '.' || dot == 0) continue;
        search.search_host_table(table_.keys.find(kWildcardHostNs, host.substr(dot + 1)));
      }
    }
  }
  search.search_host_table(table_.any_host_root);
  search.write(result);
}

}  // namespace turnpike::router::detail
