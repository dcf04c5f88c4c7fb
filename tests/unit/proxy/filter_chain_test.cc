// The filter chain a snapshot builds: global, listener and route plugins merged (the more
// specific level's conf wins for the same plugin) and ordered by priority; and a consumer's
// plugins merged into a request's chain when an authentication plugin attaches it.
#include <gtest/gtest.h>

#include "turnpike/proxy/pipeline.h"
#include "turnpike/proxy/plugins.h"
#include "turnpike/config/config.h"
#include "turnpike/proxy/request_context.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {
namespace {

// The test plugins of the integration tests: tracer (priority 500), early (5000), raiser (900).
constexpr const char* kConfig = R"(
plugin_paths: [")" TURNPIKE_TEST_PLUGINS R"("]
plugins:
  tracer: {label: global}
  early: {}
listeners:
  - name: a
    address: 127.0.0.1
    port: 0
    plugins:
      tracer: {label: listener-a}
  - name: b
    address: 127.0.0.1
    port: 0
upstreams:
  - name: o
    nodes: ["127.0.0.1:9"]
routes:
  - name: plain
    match: {paths: ["/plain"]}
    upstream: o
  - name: own
    match: {paths: ["/own"]}
    upstream: o
    plugins:
      tracer: {label: route}
      raiser: {}
consumers:
  - username: alice
    plugins:
      tracer: {label: alice}
      key-auth: {key: k}
  - username: bob
    plugins:
      sleeper: {seconds: 1}
)";

std::shared_ptr<const Snapshot> build() {
  auto loaded = config::load_config_string(kConfig, "chain.yaml");
  EXPECT_TRUE(loaded.config) << (loaded.errors.empty() ? "" : loaded.errors[0].to_string());
  std::vector<config::ConfigError> errors;
  auto snap = Snapshot::build(loaded.config, 1, errors);
  EXPECT_TRUE(snap) << (errors.empty() ? "" : errors[0].to_string());
  return snap;
}

// "name(level)" for each filter of a chain, in order.
std::string describe(const std::vector<const HttpFilter*>& chain) {
  std::string out;
  for (const HttpFilter* f : chain) {
    if (!out.empty()) out += ' ';
    out += f->name();
    if (auto* lua = dynamic_cast<const LuaPluginFilter*>(f)) {
      out += "(" + std::string(to_string(lua->catalog().uses[lua->use()].level.kind)) + ")";
    }
  }
  return out;
}

TEST(FilterChain, LevelsMergeAndPriorityOrders) {
  auto snap = build();
  ASSERT_TRUE(snap);
  const ListenerRuntime* a = snap->find_listener("a");
  const ListenerRuntime* b = snap->find_listener("b");
  // Route 0 has no plugins of its own: on listener a the listener's tracer replaces the global one.
  EXPECT_EQ(describe(a->chains[0]), "early(global) tracer(listener)");
  EXPECT_EQ(describe(b->chains[0]), "early(global) tracer(global)");
  // Route 1's tracer wins on both listeners; raiser (900) sorts between early and tracer.
  EXPECT_EQ(describe(a->chains[1]), "early(global) raiser(route) tracer(route)");
  EXPECT_EQ(describe(b->chains[1]), "early(global) raiser(route) tracer(route)");
}

TEST(FilterChain, CredentialsAreNotRunAsPlugins) {
  auto snap = build();
  ASSERT_TRUE(snap);
  EXPECT_EQ(describe(snap->consumers[0].filters), "tracer(consumer)");  // key-auth is alice's credential
  EXPECT_EQ(describe(snap->consumers[1].filters), "sleeper(consumer)");
}

TEST(FilterChain, AttachingAConsumerMergesItsPluginsAfterTheCurrentFilter) {
  auto snap = build();
  ASSERT_TRUE(snap);
  RequestContext ctx;
  ctx.snapshot = snap.get();
  const auto& chain = snap->find_listener("b")->chains[1];  // early raiser tracer(route)
  ctx.filters.assign(chain.begin(), chain.end());
  ctx.filter_slots.assign(chain.size(), 0);

  // Attached by the filter at index 0 (early): alice's tracer replaces the route's in place.
  ctx.consumer = 0;
  ctx.consumer_changed = true;
  size_t i = 0;
  merge_consumer(ctx, i);
  EXPECT_EQ(i, 0u);
  EXPECT_FALSE(ctx.consumer_changed);
  EXPECT_EQ(describe(ctx.filters), "early(global) raiser(route) tracer(consumer)");
  EXPECT_EQ(ctx.filter_slots.size(), ctx.filters.size());

  // bob's sleeper (900, equal to raiser) joins after the filters of its priority; attached at
  // raiser (index 1), the position stays on raiser.
  ctx.filters.assign(chain.begin(), chain.end());
  ctx.filter_slots.assign(chain.size(), 0);
  ctx.consumer = 1;
  ctx.consumer_changed = true;
  i = 1;
  merge_consumer(ctx, i);
  EXPECT_EQ(describe(ctx.filters), "early(global) raiser(route) sleeper(consumer) tracer(route)");
  EXPECT_EQ(i, 1u);
  EXPECT_EQ(ctx.filter_slots.size(), ctx.filters.size());
}

TEST(FilterChain, ConfigWithoutPluginsHasNoCatalog) {
  auto loaded = config::load_config_string(
      "listeners: [{name: a, address: 127.0.0.1, port: 0}]\nroutes: [{name: r, match: {paths: [\"/\"]}, respond: {body: x}}]\n",
      "plain.yaml");
  ASSERT_TRUE(loaded.config);
  std::vector<config::ConfigError> errors;
  auto snap = Snapshot::build(loaded.config, 1, errors);
  ASSERT_TRUE(snap);
  EXPECT_FALSE(snap->plugins);
  EXPECT_TRUE(snap->find_listener("a")->chains[0].empty());
}

}  // namespace
}  // namespace turnpike::proxy
