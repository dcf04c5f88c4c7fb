// Helpers for the upstream unit tests: a resolved upstream built in memory (no DNS), and a pool
// of it on an io_context the test drives by hand.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream::testing {

namespace asio = boost::asio;

struct NodeSpec {
  uint16_t port = 0;
  uint32_t weight = 1;
};

// An upstream "demo" of 127.0.0.1 nodes; `cfg` is kept alive by the returned object's owner.
inline std::shared_ptr<ResolvedUpstream> make_upstream(const config::UpstreamConfig& cfg,
                                                       const std::vector<NodeSpec>& nodes) {
  auto up = std::make_shared<ResolvedUpstream>();
  up->config = &cfg;
  for (const auto& n : nodes) {
    ResolvedNode rn;
    rn.endpoint = tcp::endpoint(asio::ip::make_address("127.0.0.1"), n.port);
    rn.weight = n.weight;
    rn.address = "127.0.0.1:" + std::to_string(n.port);
    rn.host = "127.0.0.1";
    up->nodes.push_back(rn);
  }
  index_balancing(cfg, *up, {}, {});
  return up;
}

// The nodes whose bit is set in `mask` as a request's tried set (the first 16 nodes).
inline TriedNodes tried_from_mask(uint64_t mask) {
  TriedNodes t;
  for (size_t i = 0; i < 64; ++i) {
    if (mask & (uint64_t{1} << i)) t.add(i);
  }
  return t;
}

// One pick for a request that has tried the nodes in `exclude`, with `tag`.
inline size_t pick_masked(UpstreamPool& pool, uint64_t exclude, std::string_view tag = {}) {
  const TriedNodes tried = tried_from_mask(exclude);
  PickRequest r;
  r.tried = &tried;
  r.tag = tag;
  return pool.pick(r, Clock::now());
}

// A config whose node list matches `nodes` (the pool reads node hosts only for TLS).
inline config::UpstreamConfig make_config(const std::vector<NodeSpec>& nodes) {
  config::UpstreamConfig cfg;
  cfg.name = "demo";
  for (const auto& n : nodes) {
    config::UpstreamNodeConfig nc;
    nc.host = "127.0.0.1";
    nc.port = n.port;
    nc.weight = n.weight;
    cfg.nodes.push_back(nc);
  }
  return cfg;
}

// Runs `aw` on `ioc` to completion (bounded: 5 s of 1 ms slices) and returns its result.
template <class T>
std::optional<T> run(asio::io_context& ioc, asio::awaitable<T> aw) {
  std::optional<T> out;
  asio::co_spawn(ioc, std::move(aw), [&out](std::exception_ptr e, T v) {
    if (!e) out = std::move(v);
  });
  for (int i = 0; i < 5000 && !out; ++i) {
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(1));
  }
  return out;
}

}  // namespace turnpike::upstream::testing
