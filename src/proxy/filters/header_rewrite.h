// Built-in filter: the route's request_headers / response_headers operations.
#pragma once

#include "turnpike/config/config.h"
#include "turnpike/proxy/filter.h"

namespace turnpike::proxy {

class HeaderRewriteFilter final : public HttpFilter {
 public:
  // `route` must outlive the filter (both belong to one snapshot).
  explicit HeaderRewriteFilter(const config::RouteConfig& route) : route_(route) {}
  std::string_view name() const override { return "header-rewrite"; }
  FilterStatus on_rewrite(RequestContext& ctx) const override;
  FilterStatus on_response_headers(RequestContext& ctx) const override;

 private:
  const config::RouteConfig& route_;
};

}  // namespace turnpike::proxy
