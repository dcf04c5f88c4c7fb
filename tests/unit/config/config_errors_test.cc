// Invalid configs: every class of mistake is reported as "file:line: what is wrong", and all of
// them are reported in one pass, in file order.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "turnpike/config/config.h"

namespace turnpike::config {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// Lines 1-4; tests append from line 5.
constexpr const char* kBase =
    "listeners:\n"
    "  - {name: main, port: 8080}\n"
    "upstreams:\n"
    "  - {name: demo, nodes: [\"127.0.0.1:9000\"]}\n";

std::vector<std::string> errors_of(const std::string& yaml) {
  LoadResult r = load_config_string(yaml, "test.yaml");
  EXPECT_EQ(r.config == nullptr, !r.errors.empty());
  std::vector<std::string> out;
  for (const ConfigError& e : r.errors) out.push_back(e.to_string());
  return out;
}

std::vector<std::string> route_errors(const std::string& routes) {
  return errors_of(std::string(kBase) + "routes:\n" + routes);  // routes: on line 5
}

TEST(ConfigErrors, ValidBaseHasNoErrors) { EXPECT_THAT(errors_of(kBase), SizeIs(0)); }

// --- unknown and duplicate keys ---------------------------------------------------------------

TEST(ConfigErrors, UnknownTopLevelKeySuggestsTheNearestOne) {
  EXPECT_THAT(errors_of(std::string(kBase) + "upstream: []\n"),
              ElementsAre("test.yaml:5: unknown key \"upstream\" (did you mean \"upstreams\"?)"));
}

TEST(ConfigErrors, UnknownRouteKeyNamesTheKey) {
  EXPECT_THAT(route_errors("  - name: api\n"
                           "    upstreams: demo\n"),
              ElementsAre("test.yaml:6: route \"api\": needs \"upstream\" (to proxy) or "
                          "\"respond\" (to answer directly)",
                          "test.yaml:7: route \"api\": unknown key \"upstreams\" (did you mean "
                          "\"upstream\"?)"));
}

TEST(ConfigErrors, TransposedLettersAreSuggested) {
  EXPECT_THAT(route_errors("  - name: api\n"
                           "    upstream: demo\n"
                           "    match:\n"
                           "      pahts: [\"/x\"]\n"),
              ElementsAre("test.yaml:9: route \"api\": match: unknown key \"pahts\" (did you "
                          "mean \"paths\"?)"));
}

TEST(ConfigErrors, UnrelatedUnknownKeyHasNoSuggestion) {
  EXPECT_THAT(errors_of(std::string(kBase) + "frobnicate: 1\n"),
              ElementsAre("test.yaml:5: unknown key \"frobnicate\""));
}

TEST(ConfigErrors, DuplicateKeyIsReportedAtTheSecondOne) {
  EXPECT_THAT(errors_of("listeners:\n"
                        "  - name: main\n"
                        "    port: 1\n"
                        "    port: 2\n"),
              ElementsAre("test.yaml:4: listener \"main\": key \"port\" appears more than once"));
}

// --- references and uniqueness ----------------------------------------------------------------

TEST(ConfigErrors, UndefinedUpstream) {
  EXPECT_THAT(route_errors("  - name: api\n"
                           "    upstream: nope\n"),
              ElementsAre("test.yaml:7: route \"api\": upstream \"nope\" is not defined"));
}

TEST(ConfigErrors, UndefinedListener) {
  EXPECT_THAT(route_errors("  - name: api\n"
                           "    listeners: [main, other]\n"
                           "    upstream: demo\n"),
              ElementsAre("test.yaml:7: route \"api\": listener \"other\" is not defined"));
}

TEST(ConfigErrors, DuplicateNames) {
  EXPECT_THAT(errors_of("listeners:\n"
                        "  - {name: a, port: 1}\n"
                        "  - {name: a, port: 2}\n"
                        "upstreams:\n"
                        "  - {name: u, nodes: [\"h:1\"]}\n"
                        "  - {name: u, nodes: [\"h:1\"]}\n"
                        "routes:\n"
                        "  - {name: r, upstream: u}\n"
                        "  - {name: r, upstream: u}\n"),
              ElementsAre("test.yaml:3: listener \"a\": name is already used by the listener at "
                          "line 2",
                          "test.yaml:6: upstream \"u\": name is already used by the upstream at "
                          "line 5",
                          "test.yaml:9: route \"r\": name is already used by the route at line 8"));
}

TEST(ConfigErrors, DefaultRouteNameCanCollide) {
  EXPECT_THAT(route_errors("  - {upstream: demo}\n"
                           "  - {name: \"route#1\", upstream: demo}\n"),
              ElementsAre("test.yaml:7: route \"route#1\": name is already used by the route at "
                          "line 6"));
}

TEST(ConfigErrors, SameAddressAndPortTwice) {
  EXPECT_THAT(errors_of("listeners:\n"
                        "  - {name: a, address: 127.0.0.1, port: 80}\n"
                        "  - {name: b, address: 127.0.0.1, port: 80}\n"),
              ElementsAre("test.yaml:3: listener \"b\": 127.0.0.1 port 80 is already used by "
                          "listener \"a\""));
}

TEST(ConfigErrors, RouteNeedsExactlyOneTarget) {
  EXPECT_THAT(route_errors("  - name: both\n"
                           "    upstream: demo\n"
                           "    respond: {status: 200}\n"),
              ElementsAre("test.yaml:8: route \"both\": \"upstream\" and \"respond\" cannot both "
                          "be set"));
}

// --- required items ---------------------------------------------------------------------------

TEST(ConfigErrors, EmptyConfig) {
  EXPECT_THAT(errors_of(""),
              ElementsAre("test.yaml:0: the configuration is empty: at least one listener is "
                          "required"));
}

TEST(ConfigErrors, MissingListeners) {
  EXPECT_THAT(errors_of("workers: 2\n"),
              ElementsAre("test.yaml:1: listeners: at least one listener is required"));
}

TEST(ConfigErrors, MissingRequiredFields) {
  EXPECT_THAT(errors_of("listeners:\n"
                        "  - {address: 127.0.0.1}\n"
                        "upstreams:\n"
                        "  - {name: u}\n"
                        "  - {name: v, nodes: []}\n"),
              ElementsAre("test.yaml:2: listener #1: \"name\" is required",
                          "test.yaml:2: listener #1: \"port\" is required (0 picks a free port)",
                          "test.yaml:4: upstream \"u\": \"nodes\" (or \"nodes_file\") is required (at least one node)",
                          "test.yaml:5: upstream \"v\": nodes: at least one node is required"));
}

// --- types and ranges -------------------------------------------------------------------------

TEST(ConfigErrors, WrongTypes) {
  EXPECT_THAT(errors_of(std::string(kBase) +
                        "limits: [1]\n"
                        "log: {level: [info]}\n"
                        "routes:\n"
                        "  - name: r\n"
                        "    upstream: demo\n"
                        "    priority: high\n"
                        "    match: {paths: \"/x\"}\n"),
              ElementsAre("test.yaml:5: limits: expected a mapping, got a list",
                          "test.yaml:6: log.level: expected a string, got a list",
                          "test.yaml:10: route \"r\": priority: expected an integer, got \"high\"",
                          "test.yaml:11: route \"r\": match.paths: expected a list, got \"/x\""));
}

TEST(ConfigErrors, OutOfRangeNumbers) {
  EXPECT_THAT(errors_of("workers: 300\n"
                        "listeners:\n"
                        "  - {name: main, port: 70000}\n"
                        "upstreams:\n"
                        "  - name: u\n"
                        "    nodes: [{host: h, port: 0, weight: 0}]\n"
                        "    retries: 11\n"
                        "routes:\n"
                        "  - respond: {status: 600}\n"),
              ElementsAre("test.yaml:1: workers: 300 is out of range (1..256)",
                          "test.yaml:3: listener \"main\": port: 70000 is out of range (0..65535)",
                          "test.yaml:6: upstream \"u\": nodes[1].port: 0 is out of range (1..65535)",
                          "test.yaml:6: upstream \"u\": nodes[1].weight: 0 is out of range "
                          "(1..10000)",
                          "test.yaml:7: upstream \"u\": retries: 11 is out of range (0..10)",
                          "test.yaml:9: route \"route#1\": respond.status: 600 is out of range "
                          "(200..599)"));
}

TEST(ConfigErrors, BadScalarsOfEachKind) {
  EXPECT_THAT(errors_of(std::string(kBase) +
                        "workers: many\n"
                        "drain_timeout: 10x\n"
                        "limits:\n"
                        "  max_header_bytes: 12q\n"
                        "  max_request_line: 10\n"
                        "  header_timeout: 0s\n"
                        "  merge_slashes: maybe\n"
                        "log: {level: loud, access_format: xml}\n"),
              ElementsAre(
                  "test.yaml:5: workers: expected \"auto\" or a number of threads, got \"many\"",
                  "test.yaml:6: drain_timeout: expected a duration such as \"10s\", \"250ms\", "
                  "\"2m\" or \"1h\", got \"10x\"",
                  "test.yaml:8: limits.max_header_bytes: expected a size such as \"512\", \"8k\", "
                  "\"1m\" or \"2g\", got \"12q\"",
                  "test.yaml:9: limits.max_request_line: 10 is out of range (256..1m)",
                  "test.yaml:10: limits.header_timeout: must be greater than 0",
                  "test.yaml:11: limits.merge_slashes: expected true or false, got \"maybe\"",
                  "test.yaml:12: log.level: unknown level \"loud\" (trace, debug, info, warn, "
                  "error, critical or off)",
                  "test.yaml:12: log.access_format: must be \"text\" or \"json\", got \"xml\""));
}

TEST(ConfigErrors, BadAddressesAndNodes) {
  EXPECT_THAT(errors_of("listeners:\n"
                        "  - {name: main, address: localhost, port: 80}\n"
                        "upstreams:\n"
                        "  - name: u\n"
                        "    nodes:\n"
                        "      - \"::1:8080\"\n"
                        "      - \"h:99999\"\n"
                        "      - \"bad host:1\"\n"
                        "      - [h]\n"
                        "      - \"h:1\"\n"
                        "      - \"h:1\"\n"),
              ElementsAre("test.yaml:2: listener \"main\": address: \"localhost\" is not an IPv4 "
                          "or IPv6 address",
                          "test.yaml:6: upstream \"u\": nodes[1]: \"::1:8080\" IPv6 addresses "
                          "need brackets: \"[::1]:8080\"",
                          "test.yaml:7: upstream \"u\": nodes[2]: \"h:99999\" port \"99999\" is "
                          "not in 1..65535",
                          "test.yaml:8: upstream \"u\": nodes[3]: host \"bad host\" is neither an "
                          "IP address nor a DNS name",
                          "test.yaml:9: upstream \"u\": nodes[4]: expected \"host:port\" or a "
                          "mapping with host, port and weight, got a list",
                          "test.yaml:11: upstream \"u\": nodes[6]: node h:1 is listed twice (use "
                          "weight instead)"));
}

// --- routes: match ----------------------------------------------------------------------------

TEST(ConfigErrors, UnknownAndMiscasedMethods) {
  EXPECT_THAT(route_errors("  - name: r\n"
                           "    upstream: demo\n"
                           "    match:\n"
                           "      methods: [GET, get, BREW]\n"),
              ElementsAre("test.yaml:9: route \"r\": match.methods: unknown method \"get\" "
                          "(methods are case-sensitive: \"GET\")",
                          "test.yaml:9: route \"r\": match.methods: unknown method \"BREW\" (GET, "
                          "HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH)"));
}

TEST(ConfigErrors, InvalidHostAndPathUseTheRouterRules) {
  auto errors = route_errors("  - name: r\n"
                             "    upstream: demo\n"
                             "    match:\n"
                             "      hosts: [\"bad_host!\"]\n"
                             "      paths:\n"
                             "        - /ok\n"
                             "        - no-slash\n");
  ASSERT_THAT(errors, SizeIs(2));
  EXPECT_THAT(errors[0], HasSubstr("test.yaml:9: route \"r\": match: host \"bad_host!\""));
  EXPECT_THAT(errors[1], HasSubstr("test.yaml:12: route \"r\": match: path \"no-slash\""));
}

TEST(ConfigErrors, HeaderConditionNeedsOneOperation) {
  EXPECT_THAT(route_errors("  - name: r\n"
                           "    upstream: demo\n"
                           "    match:\n"
                           "      headers:\n"
                           "        - {name: x-a, value: \"1\", prefix: \"2\"}\n"
                           "        - {name: x-b}\n"
                           "        - {name: \"x b\", present: true}\n"),
              ElementsAre("test.yaml:10: route \"r\": match.headers[1]: needs exactly one of "
                          "\"value\", \"prefix\" or \"present\"",
                          "test.yaml:11: route \"r\": match.headers[2]: needs exactly one of "
                          "\"value\", \"prefix\" or \"present\"",
                          "test.yaml:12: route \"r\": match.headers[3].name: \"x b\" is not a "
                          "valid header name"));
}

// --- routes: header rules and static responses ------------------------------------------------

TEST(ConfigErrors, HeaderRulesRejectBadNamesValuesAndManagedHeaders) {
  EXPECT_THAT(route_errors("  - name: r\n"
                           "    upstream: demo\n"
                           "    request_headers:\n"
                           "      set:\n"
                           "        \"bad name\": x\n"
                           "        x-split: \"a\\r\\nInjected: 1\"\n"
                           "        Connection: close\n"
                           "        X-Dup: 1\n"
                           "        x-dup: 2\n"
                           "      remove: [content-length, X-Dup]\n"
                           "    response_headers:\n"
                           "      add: {Transfer-Encoding: chunked}\n"),
              ElementsAre("test.yaml:10: route \"r\": request_headers.set: \"bad name\" is not a "
                          "valid header name",
                          "test.yaml:11: route \"r\": request_headers.set.x-split: \"a\\x0d\\x0a"
                          "Injected: 1\" contains a control character (CR, LF, NUL, ...)",
                          "test.yaml:12: route \"r\": request_headers.set: \"Connection\" is a "
                          "hop-by-hop or framing header managed by the proxy",
                          "test.yaml:14: route \"r\": request_headers.set: header \"x-dup\" "
                          "appears more than once",
                          "test.yaml:15: route \"r\": request_headers.remove: \"content-length\" "
                          "is a hop-by-hop or framing header managed by the proxy",
                          "test.yaml:15: route \"r\": request_headers.remove: \"X-Dup\" is both "
                          "set and removed",
                          "test.yaml:17: route \"r\": response_headers.add: \"Transfer-Encoding\" "
                          "is a hop-by-hop or framing header managed by the proxy"));
}

TEST(ConfigErrors, StaticResponseChecks) {
  EXPECT_THAT(route_errors("  - respond: {status: 204, body: \"x\"}\n"
                           "  - respond: {headers: {content-length: 5}}\n"
                           "  - respond: \"hi\"\n"),
              ElementsAre("test.yaml:6: route \"route#1\": respond: a 204 response cannot have a "
                          "body",
                          "test.yaml:7: route \"route#2\": respond.headers: \"content-length\" is "
                          "a hop-by-hop or framing header managed by the proxy",
                          "test.yaml:8: route \"route#3\": respond: expected a mapping, got "
                          "\"hi\""));
}

TEST(ConfigErrors, InvalidNames) {
  EXPECT_THAT(errors_of("listeners:\n"
                        "  - {name: \"a b\", port: 1}\n"),
              ElementsAre("test.yaml:2: listener #1: name: \"a b\" must be 1..128 printable ASCII "
                          "characters without spaces, quotes or backslashes"));
}

// --- the file as a whole ----------------------------------------------------------------------

TEST(ConfigErrors, EveryErrorIsReportedInFileOrder) {
  auto errors = errors_of("listeners:\n"
                          "  - {name: main, port: -1}\n"
                          "upstreams:\n"
                          "  - {name: u, nodes: [\"h:1\"], retries: 99}\n"
                          "routes:\n"
                          "  - {upstream: nope}\n"
                          "  - {upstream: u, match: {methods: [FOO]}}\n"
                          "limits: {max_headers: 0}\n");
  ASSERT_THAT(errors, SizeIs(5));
  EXPECT_THAT(errors[0], HasSubstr("test.yaml:2: "));
  EXPECT_THAT(errors[1], HasSubstr("test.yaml:4: "));
  EXPECT_THAT(errors[2], HasSubstr("test.yaml:6: "));
  EXPECT_THAT(errors[3], HasSubstr("test.yaml:7: "));
  EXPECT_THAT(errors[4], HasSubstr("test.yaml:8: "));
}

TEST(ConfigErrors, YamlSyntaxErrorIsOneErrorWithItsLine) {
  auto errors = errors_of("listeners:\n"
                          "  - {name: main, port: 1}\n"
                          "routes: [\n"
                          "  {a: b\n"
                          "bad: }\n");
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_THAT(errors[0], HasSubstr("YAML syntax error: "));
  EXPECT_THAT(errors[0], ::testing::MatchesRegex("test\\.yaml:[1-9][0-9]*: .*"));
}

TEST(ConfigErrors, TopLevelMustBeAMapping) {
  EXPECT_THAT(errors_of("- a\n- b\n"),
              ElementsAre("test.yaml:1: expected a mapping at the top level, got a list"));
}

TEST(ConfigErrors, OnlyOneDocument) {
  EXPECT_THAT(errors_of(std::string(kBase) + "---\nworkers: 1\n"),
              ElementsAre("test.yaml:6: only one YAML document is allowed per file"));
}

TEST(ConfigErrors, MissingFile) {
  LoadResult r = load_config_file("/nonexistent/turnpike.yaml");
  EXPECT_EQ(r.config, nullptr);
  ASSERT_THAT(r.errors, SizeIs(1));
  EXPECT_EQ(r.errors[0].to_string(),
            "/nonexistent/turnpike.yaml:0: cannot read: No such file or directory");
}

TEST(ConfigErrors, DirectoryIsNotAFile) {
  LoadResult r = load_config_file("/");
  ASSERT_THAT(r.errors, SizeIs(1));
  EXPECT_EQ(r.errors[0].to_string(), "/:0: cannot read: Is a directory");
}

}  // namespace
}  // namespace turnpike::config
