// An active HTTP check's response (src/upstream/probe.h): the framing read from its head decides
// whether the kept connection can carry the next check, and the verdict whether the node passed.
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "probe.h"

namespace turnpike::upstream {
namespace {

struct Fed {
  bool enough = false;
  ResponseParser r;
};

Fed feed(std::string_view text, const config::ActiveHealthConfig& a = {}) {
  Fed f;
  f.enough = f.r.feed(a, text.data(), text.size());
  return f;
}

TEST(CheckResponse, ContentLengthMakesItCompleteAndKeepsTheConnection) {
  Fed f = feed("HTTP/1.1 200 OK\r\nServer: x\r\nCONTENT-length:  5\r\n\r\nhello");
  EXPECT_TRUE(f.enough);
  EXPECT_EQ(f.r.status, 200);
  EXPECT_EQ(f.r.length, 5u);
  EXPECT_TRUE(f.r.complete);
  EXPECT_TRUE(f.r.keep_alive());
  std::string why;
  EXPECT_TRUE(f.r.verdict({}, false, {}, why)) << why;
}

TEST(CheckResponse, ABodyStillOnItsWayIsNotEnough) {
  Fed f = feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
  EXPECT_FALSE(f.enough);
  EXPECT_FALSE(f.r.complete);
  EXPECT_TRUE(f.r.feed({}, "world", 5));
  EXPECT_TRUE(f.r.keep_alive());
}

TEST(CheckResponse, ConnectionCloseAndHttp10AreNotKept) {
  EXPECT_FALSE(feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n").r.keep_alive());
  EXPECT_FALSE(feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").r.keep_alive());
  // Only the first field of a name counts, and "keep-alive" is not "close".
  EXPECT_TRUE(feed("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                  .r.keep_alive());
}

TEST(CheckResponse, TransferEncodingOverridesContentLength) {
  // Wherever it stands: a chunked response is read to its end and its connection not kept.
  for (std::string_view head : {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nContent-Length: 2\r\n\r\n"}) {
    Fed f = feed(head);
    EXPECT_EQ(f.r.length, SIZE_MAX) << head;
    EXPECT_FALSE(f.r.keep_alive()) << head;
  }
}

TEST(CheckResponse, NoLengthIsReadUntilTheBodyMatchOrTheEnd) {
  config::ActiveHealthConfig a;
  a.body = "ok";
  Fed f = feed("HTTP/1.1 200 OK\r\nX-Content-Length: 3\r\n\r\nall ", a);
  EXPECT_FALSE(f.enough);  // "x-content-length" is another field
  EXPECT_EQ(f.r.length, SIZE_MAX);
  EXPECT_TRUE(f.r.feed(a, "ok", 2));
  std::string why;
  EXPECT_TRUE(f.r.verdict(a, false, {}, why)) << why;
}

TEST(CheckResponse, AnUnexpectedStatusFailsAtTheHead) {
  Fed f = feed("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n");
  EXPECT_TRUE(f.enough);  // no need to read the body
  std::string why;
  EXPECT_FALSE(f.r.verdict({}, false, {}, why));
  EXPECT_EQ(why, "status 503");
}

TEST(CheckResponse, ResetIsANewParser) {
  Fed f = feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(f.r.keep_alive());
  f.r.reset();
  const ResponseParser fresh;
  EXPECT_TRUE(f.r.in.empty());
  EXPECT_EQ(f.r.status, fresh.status);
  EXPECT_EQ(f.r.body_at, fresh.body_at);
  EXPECT_EQ(f.r.length, fresh.length);
  EXPECT_EQ(f.r.close, fresh.close);
  EXPECT_EQ(f.r.complete, fresh.complete);
}

}  // namespace
}  // namespace turnpike::upstream
