// IoBatch (src/upstream/io_batch.h): a tick's sends and receives made together, with io_uring or
// one by one, on real socket pairs; both ways give the system calls' own results.
#include "io_batch.h"

#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>

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

#if defined(__x86_64__)
// Refuses io_uring_enter from now on (EPERM), as a seccomp profile that forbids io_uring would.
bool refuse_io_uring_enter() {
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

TEST(IoBatchFailure, ARingThatFailsGivesWayToOneByOneWithoutSendingTwice) {
  ::unsetenv("TURNPIKE_IO_URING");
  {
    IoBatch probe;
    if (!probe.uring()) GTEST_SKIP() << "io_uring is not available here";
  }
  // In a child process, so that the filter stays there. Exit codes: 0 passed, else the step
  // that failed.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    IoBatch batch;
    Pair in, out;
    if (!batch.uring()) ::_exit(2);
    if (::send(in.fd[1], "answer", 6, 0) != 6) ::_exit(3);
    if (!refuse_io_uring_enter()) ::_exit(4);
    batch.clear();
    const size_t got = batch.recv(in.fd[0], 64);
    const size_t sent = batch.send(out.fd[0], "request", 7);
    batch.run();
    if (batch.uring()) ::_exit(5);                       // the ring is gone
    if (batch.result(got) != 6) ::_exit(6);              // the receive made one by one
    if (std::string_view(batch.data(got), 6) != "answer") ::_exit(7);
    if (batch.result(sent) != -ECANCELED) ::_exit(8);    // a send that may have gone is not repeated
    char buf[16];
    if (::recv(out.fd[1], buf, sizeof buf, MSG_DONTWAIT) != -1) ::_exit(9);
    batch.clear();                                       // the next tick: one by one
    const size_t again = batch.send(out.fd[0], "request", 7);
    batch.run();
    if (batch.result(again) != 7) ::_exit(10);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the step that failed (see the test's exit codes)";
}
#endif

INSTANTIATE_TEST_SUITE_P(Ways, IoBatchTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Uring" : "OneByOne"; });

}  // namespace
}  // namespace turnpike::upstream
