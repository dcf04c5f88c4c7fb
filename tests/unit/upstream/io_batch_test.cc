// IoBatch (src/upstream/io_batch.h): a tick's sends and receives made together, with io_uring or
// one by one, on real socket pairs; both ways give the system calls' own results.
#include "io_batch.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace turnpike::upstream {
namespace {

struct Pair {
  int fd[2] = {-1, -1};
  Pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0); }
  ~Pair() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
};

// Each test runs with io_uring (where the kernel allows it) and with TURNPIKE_IO_URING=off.
class IoBatchTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      ::unsetenv("TURNPIKE_IO_URING");
    } else {
      ::setenv("TURNPIKE_IO_URING", "off", 1);
    }
  }
  void TearDown() override { ::unsetenv("TURNPIKE_IO_URING"); }
};

TEST_P(IoBatchTest, SendsAndReceivesGiveTheSystemCallsResults) {
  IoBatch batch;
  if (!GetParam()) {
    EXPECT_FALSE(batch.uring());
  }
  Pair a, b, closed, empty;
  ASSERT_EQ(::send(a.fd[1], "response", 8, 0), 8);
  ::close(closed.fd[1]);
  closed.fd[1] = -1;
  const std::string request = "GET / HTTP/1.1\r\n\r\n";
  batch.clear();
  const size_t got = batch.recv(a.fd[0], 64);
  const size_t sent = batch.send(b.fd[0], request.data(), request.size());
  const size_t eof = batch.recv(closed.fd[0], 64);
  const size_t nothing = batch.recv(empty.fd[0], 64);
  const size_t bad = batch.send(-1, request.data(), request.size());
  batch.run();
  ASSERT_EQ(batch.result(got), 8);
  EXPECT_EQ(std::string_view(batch.data(got), 8), "response");
  EXPECT_EQ(batch.result(sent), static_cast<ssize_t>(request.size()));
  char buf[64];
  EXPECT_EQ(::recv(b.fd[1], buf, sizeof buf, MSG_DONTWAIT), static_cast<ssize_t>(request.size()));
  EXPECT_EQ(batch.result(eof), 0);
  EXPECT_EQ(batch.result(nothing), -EAGAIN);  // never waits for a peer
  EXPECT_EQ(batch.result(bad), -EBADF);
}

TEST_P(IoBatchTest, ASendToAClosedPeerFailsWithoutASignal) {
  IoBatch batch;
  Pair p;
  ::close(p.fd[1]);
  p.fd[1] = -1;
  batch.clear();
  const size_t op = batch.send(p.fd[0], "x", 1);
  batch.run();
  EXPECT_EQ(batch.result(op), -EPIPE);  // (SIGPIPE would have ended the test binary)
}

TEST_P(IoBatchTest, MoreOperationsThanTheRingTakesAtOnce) {
  // 300 receives and 300 sends: more than one submission's worth (256); every one is made, and
  // each receive's bytes land in its own buffer.
  IoBatch batch;
  std::vector<Pair> pairs(300);
  for (size_t i = 0; i < pairs.size(); ++i) {
    const std::string text = "node " + std::to_string(i);
    ASSERT_EQ(::send(pairs[i].fd[1], text.data(), text.size(), 0), static_cast<ssize_t>(text.size()));
  }
  batch.clear();
  std::vector<size_t> receives, sends;
  for (auto& p : pairs) receives.push_back(batch.recv(p.fd[0], 32));
  for (auto& p : pairs) sends.push_back(batch.send(p.fd[0], "ping", 4));
  batch.run();
  for (size_t i = 0; i < pairs.size(); ++i) {
    const std::string text = "node " + std::to_string(i);
    ASSERT_EQ(batch.result(receives[i]), static_cast<ssize_t>(text.size())) << i;
    EXPECT_EQ(std::string_view(batch.data(receives[i]), text.size()), text);
    EXPECT_EQ(batch.result(sends[i]), 4) << i;
  }
  // The next tick starts afresh.
  batch.clear();
  EXPECT_EQ(batch.size(), 0u);
  const size_t op = batch.recv(pairs[0].fd[1], 32);
  batch.run();
  ASSERT_EQ(batch.result(op), 4);
  EXPECT_EQ(std::string_view(batch.data(op), 4), "ping");
}

INSTANTIATE_TEST_SUITE_P(Ways, IoBatchTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Uring" : "OneByOne"; });

}  // namespace
}  // namespace turnpike::upstream
