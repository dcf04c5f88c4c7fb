// SeriesRegistry: ids are stable, never reused, per space, and capped into the overflow id.
#include "turnpike/metrics/series.h"

#include <gtest/gtest.h>

namespace turnpike::metrics {
namespace {

TEST(SeriesRegistry, RouteIdZeroIsUnmatched) {
  SeriesRegistry reg(16);
  ASSERT_EQ(reg.names(Space::route).size(), 1u);
  EXPECT_EQ(reg.names(Space::route)[0], kUnmatched);
  EXPECT_EQ(reg.id(Space::route, kUnmatched), 0u);
}

TEST(SeriesRegistry, SameNameSameIdAcrossSnapshots) {
  SeriesRegistry reg(16);
  reg.begin_snapshot();
  const uint32_t a = reg.id(Space::route, "a");
  const uint32_t b = reg.id(Space::route, "b");
  EXPECT_NE(a, b);
  reg.begin_snapshot();  // a reload that lists b first
  EXPECT_EQ(reg.id(Space::route, "b"), b);
  EXPECT_EQ(reg.id(Space::route, "a"), a);
}

TEST(SeriesRegistry, SpacesAreIndependent) {
  SeriesRegistry reg(16);
  EXPECT_EQ(reg.id(Space::upstream, "x"), 0u);
  EXPECT_EQ(reg.id(Space::listener, "x"), 0u);
  EXPECT_EQ(reg.id(Space::route, "x"), 1u);  // after (unmatched)
}

TEST(SeriesRegistry, NamesPastTheCapShareTheOverflowIdAndAreCounted) {
  SeriesRegistry reg(16);
  reg.begin_snapshot();
  for (int i = 0; i < 15; ++i) EXPECT_LT(reg.id(Space::upstream, "u" + std::to_string(i)), 15u);
  EXPECT_EQ(reg.id(Space::upstream, "u15"), 15u);  // the 16th name still fits
  EXPECT_EQ(reg.id(Space::upstream, "u16"), reg.overflow_id());
  EXPECT_EQ(reg.id(Space::upstream, "u17"), reg.overflow_id());
  EXPECT_EQ(reg.folded(Space::upstream), 2u);
  EXPECT_EQ(reg.names(Space::upstream).size(), 16u);
  reg.begin_snapshot();
  EXPECT_EQ(reg.folded(Space::upstream), 0u);
  EXPECT_EQ(reg.id(Space::upstream, "u3"), 3u);  // old names keep theirs
}

}  // namespace
}  // namespace turnpike::metrics
