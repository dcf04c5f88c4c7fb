// The readiness-wait fast path (tls/edge_wait.h) is compiled only for the Boost version and
// reactor it was written against; elsewhere it falls back without a word. On the platform we ship
// (Debian 12: Boost 1.81, epoll) the fallback would be a silent performance regression, so there
// it is a test failure. A Boost upgrade makes this test say so, and edge_wait.h must be checked
// against the new Boost before the version guard is widened.
#include <gtest/gtest.h>

#include "turnpike/tls/edge_wait.h"

namespace {

TEST(EdgeWait, FastPathIsCompiledOnTheShippedBoostWithEpoll) {
#if BOOST_VERSION == 108100 && defined(__linux__)
  EXPECT_EQ(TURNPIKE_EDGE_WAIT, 1) << "Boost 1.81 on Linux should use the edge fast path; "
                                      "edge_wait.h's guard no longer holds (reactor? handler tracking?)";
#else
  GTEST_SKIP() << "Boost " << BOOST_VERSION << ": the fast path is expected only with Boost 1.81 on Linux";
#endif
}

}  // namespace
