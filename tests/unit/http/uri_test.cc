// Request-target handling: the four target forms, authority validation, and path normalization
// (RFC 3986 §5.4 examples, adapted to absolute paths, plus the encodings attackers use).
#include <gtest/gtest.h>

#include <string>

#include "turnpike/http/uri.h"

namespace turnpike::http {
namespace {

// ---------------------------------------------------------------------------------------------
// split_target
// ---------------------------------------------------------------------------------------------

TEST(SplitTarget, OriginFormWithAndWithoutQuery) {
  TargetParts p;
  ASSERT_EQ(split_target("/a/b?x=1&y", p), TargetForm::origin);
  EXPECT_EQ(p.path, "/a/b");
  EXPECT_EQ(p.query, "x=1&y");
  EXPECT_TRUE(p.has_query);
  EXPECT_TRUE(p.scheme.empty());
  ASSERT_EQ(split_target("/a?", p), TargetForm::origin);
  EXPECT_EQ(p.query, "");
  EXPECT_TRUE(p.has_query);
  ASSERT_EQ(split_target("/a", p), TargetForm::origin);
  EXPECT_FALSE(p.has_query);
}

TEST(SplitTarget, AbsoluteForm) {
  TargetParts p;
  ASSERT_EQ(split_target("http://Example.com:8080/p/q?z", p), TargetForm::absolute);
  EXPECT_EQ(p.scheme, "http");
  EXPECT_EQ(p.authority, "Example.com:8080");
  EXPECT_EQ(p.path, "/p/q");
  EXPECT_EQ(p.query, "z");
  ASSERT_EQ(split_target("https://[::1]", p), TargetForm::absolute);
  EXPECT_EQ(p.authority, "[::1]");
  EXPECT_EQ(p.path, "/");  // RFC 9112 §3.2.1: an empty path is "/"
  ASSERT_EQ(split_target("http://a?q", p), TargetForm::absolute);
  EXPECT_EQ(p.path, "/");
  EXPECT_EQ(p.query, "q");
  EXPECT_TRUE(p.has_query);
}

TEST(SplitTarget, AuthorityFormNeedsAPort) {
  TargetParts p;
  ASSERT_EQ(split_target("example.com:443", p), TargetForm::authority);
  EXPECT_EQ(p.authority, "example.com:443");
  EXPECT_TRUE(p.path.empty());
  EXPECT_EQ(split_target("[2001:db8::1]:443", p), TargetForm::authority);
  EXPECT_EQ(split_target("example.com", p), TargetForm::invalid);
}

TEST(SplitTarget, AsteriskForm) {
  TargetParts p;
  ASSERT_EQ(split_target("*", p), TargetForm::asterisk);
  EXPECT_EQ(p.path, "*");
}

TEST(SplitTarget, RejectsEverythingElse) {
  TargetParts p;
  for (const char* t : {"", "/a#frag", "**", "http://", "http:///a", "http://user@host/",
                        "http://a b/", "urn:isbn:1", "a/b", "?q", "http:/a", "1http://a/"}) {
    EXPECT_EQ(split_target(t, p), TargetForm::invalid) << t;
  }
  EXPECT_EQ(to_string(TargetForm::invalid), "invalid");
}

// ---------------------------------------------------------------------------------------------
// Authorities
// ---------------------------------------------------------------------------------------------

TEST(ParseAuthority, LowerCasesHostAndDropsPort) {
  std::string host;
  ASSERT_TRUE(parse_authority("Example.COM:8080", host));
  EXPECT_EQ(host, "example.com");
  ASSERT_TRUE(parse_authority("api.example.com", host));
  EXPECT_EQ(host, "api.example.com");
  ASSERT_TRUE(parse_authority("[2001:DB8::1]:443", host));
  EXPECT_EQ(host, "[2001:db8::1]");
  ASSERT_TRUE(parse_authority("10.0.0.1:65535", host));
  EXPECT_EQ(host, "10.0.0.1");
}

TEST(ParseAuthority, AcceptsValidIpv6Forms) {
  std::string host;
  for (const char* a : {"[::]", "[::1]", "[1::]", "[1:2:3:4:5:6:7:8]", "[1:2:3:4:5:6:7::]",
                        "[::ffff:192.0.2.1]", "[1:2:3:4:5:6:1.2.3.4]", "[fe80::1:2]"}) {
    EXPECT_TRUE(parse_authority(a, host)) << a;
  }
}

TEST(ParseAuthority, RejectsInvalidAuthorities) {
  std::string host;
  for (const char* a : {"", ":80", "a:", "a:65536", "a:123456", "a:-1", "a b", "user@a", "a%41",
                        "a!b", "[]", "[:]", "[1:2:3:4:5:6:7:8:9]", "[1::2::3]", "[12345::]",
                        "[1:2:3:4:5:6:7]", "[::1.2.3]", "[::1.2.3.256]", "[::01.2.3.4]",
                        "[::1]x", "[::1", "::1", "[v1.a]", "[fe80::1%25eth0]", "[1:]"}) {
    EXPECT_FALSE(parse_authority(a, host)) << a;
  }
  EXPECT_FALSE(parse_authority(std::string(256, 'a'), host));
  EXPECT_TRUE(parse_authority(std::string(255, 'a'), host));
}

TEST(SplitAuthority, ReturnsViewsOfHostAndPort) {
  std::string_view host, port;
  ASSERT_TRUE(split_authority("Example.com:8080", host, port));
  EXPECT_EQ(host, "Example.com");
  EXPECT_EQ(port, "8080");
  ASSERT_TRUE(split_authority("[::1]", host, port));
  EXPECT_EQ(host, "[::1]");
  EXPECT_TRUE(port.empty());
}

// ---------------------------------------------------------------------------------------------
// normalize_path
// ---------------------------------------------------------------------------------------------

std::string normalized(std::string_view path, bool merge_slashes = true) {
  std::string out;
  NormalizeOptions options;
  options.merge_slashes = merge_slashes;
  if (!normalize_path(path, options, out)) return "<invalid>";
  EXPECT_LE(out.size(), path.size());
  return out;
}

TEST(NormalizePath, LeavesCleanPathsAlone) {
  EXPECT_EQ(normalized("/"), "/");
  EXPECT_EQ(normalized("/a/b/c"), "/a/b/c");
  EXPECT_EQ(normalized("/a/b/"), "/a/b/");
  EXPECT_EQ(normalized("/a;p=1/b:c@d/!$&'()*+,=-._~"), "/a;p=1/b:c@d/!$&'()*+,=-._~");
}

// RFC 3986 §5.4.1 normal examples against base "http://a/b/c/d;p?q", written as the merged path
// that remove_dot_segments receives.
TEST(NormalizePath, Rfc3986NormalExamples) {
  EXPECT_EQ(normalized("/b/c/g"), "/b/c/g");              // "g"
  EXPECT_EQ(normalized("/b/c/./g"), "/b/c/g");            // "./g"
  EXPECT_EQ(normalized("/b/c/g/"), "/b/c/g/");            // "g/"
  EXPECT_EQ(normalized("/g"), "/g");                      // "/g"
  EXPECT_EQ(normalized("/b/c/;x"), "/b/c/;x");            // ";x"
  EXPECT_EQ(normalized("/b/c/g;x"), "/b/c/g;x");          // "g;x"
  EXPECT_EQ(normalized("/b/c/."), "/b/c/");               // "."
  EXPECT_EQ(normalized("/b/c/./"), "/b/c/");              // "./"
  EXPECT_EQ(normalized("/b/c/.."), "/b/");                // ".."
  EXPECT_EQ(normalized("/b/c/../"), "/b/");               // "../"
  EXPECT_EQ(normalized("/b/c/../g"), "/b/g");             // "../g"
  EXPECT_EQ(normalized("/b/c/../.."), "/");               // "../.."
  EXPECT_EQ(normalized("/b/c/../../"), "/");              // "../../"
  EXPECT_EQ(normalized("/b/c/../../g"), "/g");            // "../../g"
}

// RFC 3986 §5.4.2 abnormal examples.
TEST(NormalizePath, Rfc3986AbnormalExamples) {
  EXPECT_EQ(normalized("/b/c/../../../g"), "/g");
  EXPECT_EQ(normalized("/b/c/../../../../g"), "/g");
  EXPECT_EQ(normalized("/./g"), "/g");
  EXPECT_EQ(normalized("/../g"), "/g");
  EXPECT_EQ(normalized("/b/c/g."), "/b/c/g.");
  EXPECT_EQ(normalized("/b/c/.g"), "/b/c/.g");
  EXPECT_EQ(normalized("/b/c/g.."), "/b/c/g..");
  EXPECT_EQ(normalized("/b/c/..g"), "/b/c/..g");
  EXPECT_EQ(normalized("/b/c/./../g"), "/b/g");
  EXPECT_EQ(normalized("/b/c/./g/."), "/b/c/g/");
  EXPECT_EQ(normalized("/b/c/g/./h"), "/b/c/g/h");
  EXPECT_EQ(normalized("/b/c/g/../h"), "/b/c/h");
  EXPECT_EQ(normalized("/b/c/g;x=1/./y"), "/b/c/g;x=1/y");
  EXPECT_EQ(normalized("/b/c/g;x=1/../y"), "/b/c/y");
}

TEST(NormalizePath, CannotClimbAboveTheRoot) {
  EXPECT_EQ(normalized("/.."), "/");
  EXPECT_EQ(normalized("/../.."), "/");
  EXPECT_EQ(normalized("/../../etc/passwd"), "/etc/passwd");
  EXPECT_EQ(normalized("/a/../../b"), "/b");
  EXPECT_EQ(normalized("/."), "/");
}

TEST(NormalizePath, DecodesEncodedDotsBeforeRemovingSegments) {
  EXPECT_EQ(normalized("/admin/%2e%2e/public"), "/public");
  EXPECT_EQ(normalized("/public/%2E%2E/admin"), "/admin");
  EXPECT_EQ(normalized("/a/.%2e/b"), "/b");
  EXPECT_EQ(normalized("/a/%2e/b"), "/a/b");
  EXPECT_EQ(normalized("/%2e%2e/%2e%2e/x"), "/x");
}

TEST(NormalizePath, DecodesUnreservedAndUpperCasesOtherEscapes) {
  EXPECT_EQ(normalized("/%41%62%7e%2D%5f"), "/Ab~-_");
  EXPECT_EQ(normalized("/a%2fb"), "/a%2Fb");
  EXPECT_EQ(normalized("/a%2Fb/../c"), "/c");  // %2F is data, not a separator
  EXPECT_EQ(normalized("/%c3%a9"), "/%C3%A9");
  EXPECT_EQ(normalized("/a%20b%3F"), "/a%20b%3F");
}

TEST(NormalizePath, MergesSlashesWhenAsked) {
  EXPECT_EQ(normalized("//a///b//"), "/a/b/");
  EXPECT_EQ(normalized("//"), "/");
  EXPECT_EQ(normalized("/a//../b"), "/b");
  EXPECT_EQ(normalized("//a///b//", false), "//a///b//");
  EXPECT_EQ(normalized("/a//..", false), "/a/");
  EXPECT_EQ(normalized("//..", false), "/");
}

TEST(NormalizePath, RejectsMalformedInput) {
  for (const char* p : {"", "a/b", "*", "/%00", "/a%00b", "/%G1", "/%4", "/%", "/a%4g",
                        "/a b", "/a\\b", "/a#b", "/a?b", "/a\"b", "/<x>", "/a{b}", "/a|b",
                        "/caf\xc3\xa9", "/a\x01", "/..;/admin", "/a/.;x/b", "/a/%2e%2e;/b"}) {
    EXPECT_EQ(normalized(p), "<invalid>") << p;
  }
}

TEST(NormalizePath, KeepsOutputCapacityAcrossCalls) {
  std::string out;
  out.reserve(64);
  const char* storage = out.data();
  ASSERT_TRUE(normalize_path("/a/b/../c", {}, out));
  ASSERT_TRUE(normalize_path("/x/y/z", {}, out));
  EXPECT_EQ(out.data(), storage);
  EXPECT_EQ(out, "/x/y/z");
}

}  // namespace
}  // namespace turnpike::http
