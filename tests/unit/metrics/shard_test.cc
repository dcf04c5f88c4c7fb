// WorkerMetrics cells: status slots, method classes, histogram buckets, disabled recording.
#include "turnpike/metrics/shard.h"

#include <gtest/gtest.h>

namespace turnpike::metrics {
namespace {

TEST(StatusSlot, CommonCodesHaveTheirOwnOthersTheirClass) {
  EXPECT_EQ(status_label(status_slot(200)), "200");
  EXPECT_EQ(status_label(status_slot(429)), "429");
  EXPECT_EQ(status_label(status_slot(499)), "499");
  EXPECT_EQ(status_label(status_slot(299)), "2xx");
  EXPECT_EQ(status_label(status_slot(418)), "4xx");
  EXPECT_EQ(status_label(status_slot(103)), "1xx");
  EXPECT_EQ(status_label(status_slot(599)), "5xx");
  EXPECT_EQ(status_label(status_slot(0)), "5xx");     // no status: counted as a server error
  EXPECT_EQ(status_label(status_slot(-1)), "5xx");
  EXPECT_EQ(status_label(status_slot(1000)), "5xx");
}

TEST(Histogram, BucketsAreUpperInclusiveAndSumIsKept) {
  Histogram h{};
  observe(h, 0);           // <= 1 ms
  observe(h, 1'000);       // == 1 ms: still the first bucket (le="0.001")
  observe(h, 1'001);       // the second
  observe(h, 60'000'000);  // a minute: +Inf
  EXPECT_EQ(h.buckets[0], 2u);
  EXPECT_EQ(h.buckets[1], 1u);
  EXPECT_EQ(h.buckets[kBuckets - 1], 1u);
  EXPECT_EQ(h.sum_us, 60'002'001u);
}

TEST(WorkerMetrics, RecordsByRouteMethodAndStatus) {
  WorkerMetrics m(16, true);
  m.request(3, MethodClass::write, 201, 2'000, 10, 20);
  m.request(3, MethodClass::write, 201, 2'000, 0, 5);
  m.request(3, MethodClass::read, 404, 100, 0, 0);
  const RouteCells& c = m.route(3);
  EXPECT_EQ(load(c.requests[static_cast<size_t>(MethodClass::write)][status_slot(201)]), 2u);
  EXPECT_EQ(load(c.requests[static_cast<size_t>(MethodClass::read)][status_slot(404)]), 1u);
  EXPECT_EQ(load(c.bytes_in), 10u);
  EXPECT_EQ(load(c.bytes_out), 25u);
  EXPECT_EQ(load(m.route(2).duration.sum_us), 0u);
}

TEST(WorkerMetrics, InFlightGoesUpAndDown) {
  WorkerMetrics m(16, true);
  m.in_flight(1, +1);
  m.in_flight(1, +1);
  m.in_flight(1, -1);
  EXPECT_EQ(static_cast<int64_t>(load(m.upstream(1).in_flight)), 1);
}

TEST(WorkerMetrics, IdsPastTheCapLandInTheOverflowCell) {
  WorkerMetrics m(16, true);
  m.accepted(16);    // the overflow id itself
  m.accepted(1000);  // never handed out, but must not write out of bounds
  EXPECT_EQ(load(m.listener(16).accepted), 2u);
}

TEST(WorkerMetrics, DisabledRecordsNothing) {
  WorkerMetrics m(16, false);
  m.request(0, MethodClass::read, 200, 1, 1, 1);
  m.plugin_error(0, true);
  EXPECT_EQ(load(m.route(0).requests[0][status_slot(200)]), 0u);
  EXPECT_EQ(load(m.plugin(0).errors), 0u);
}

}  // namespace
}  // namespace turnpike::metrics
