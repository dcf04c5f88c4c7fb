// Via (RFC 9110 §7.6.3): recognising this gateway's own pseudonym in a request's Via fields,
// which is how a forwarding loop is detected.
#include <gtest/gtest.h>

#include "turnpike/proxy/headers.h"

namespace turnpike::proxy {
namespace {

bool lists(std::vector<http::Header> headers, std::string_view pseudonym = "edge-1") {
  return via_lists(headers, pseudonym);
}

TEST(ViaLists, FindsThePseudonymInAnyEntryOfAnyField) {
  EXPECT_TRUE(lists({{"Via", "1.1 edge-1"}}));
  EXPECT_TRUE(lists({{"via", "1.0 fred, 1.1 edge-1"}}));
  EXPECT_TRUE(lists({{"Via", "1.0 fred"}, {"VIA", "2 edge-1 (Turnpike)"}}));
  EXPECT_TRUE(lists({{"Via", "HTTP/1.1 EDGE-1"}}));  // names are compared case-insensitively
  EXPECT_TRUE(lists({{"Via", "1.1\tedge-1"}}));
}

TEST(ViaLists, IgnoresOtherRecipientsAndOtherFields) {
  EXPECT_FALSE(lists({}));
  EXPECT_FALSE(lists({{"Via", "1.1 edge-10"}}));
  EXPECT_FALSE(lists({{"Via", "1.1 edge"}}));
  EXPECT_FALSE(lists({{"X-Via", "1.1 edge-1"}}));
  EXPECT_FALSE(lists({{"Via", "edge-1"}}));  // a received-by needs a received-protocol before it
}

TEST(ViaLists, APseudonymInsideACommentIsNotARecipient) {
  EXPECT_FALSE(lists({{"Via", "1.1 fred (via 1.1 edge-1, really)"}}));
  EXPECT_FALSE(lists({{"Via", "1.1 fred (a, 1.1 edge-1)"}}));
  EXPECT_TRUE(lists({{"Via", "1.1 fred (a, b), 1.1 edge-1"}}));
}

}  // namespace
}  // namespace turnpike::proxy
