// Out-of-line string helpers (include/turnpike/common/strings.h): the "did you mean" guess that
// config keys, plugin names and plugin conf fields share.
#include <algorithm>
#include <vector>

#include "turnpike/common/strings.h"

namespace turnpike {

namespace {

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("pahts").
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = ascii_lower(a[i - 1]) == ascii_lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string_view nearest_name(std::string_view key, std::span<const std::string_view> candidates) {
  std::string_view best;
  size_t best_distance = key.size() <= 4 ? 1 : 2;
  for (std::string_view a : candidates) {
    size_t dist = edit_distance(key, a);
    if (dist <= best_distance && (best.empty() || dist < best_distance)) {
      best = a;
      best_distance = dist;
    }
  }
  return best;
}

}  // namespace turnpike
