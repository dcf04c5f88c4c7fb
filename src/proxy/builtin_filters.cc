// The one list of built-in filters: which a route gets, in which order. No static registration.
#include "builtin_filters.h"

#include "filters/header_rewrite.h"

namespace turnpike::proxy {

std::vector<std::shared_ptr<const HttpFilter>> build_route_filters(const config::RouteConfig& route) {
  std::vector<std::shared_ptr<const HttpFilter>> filters;
  if (!route.request_headers.empty() || !route.response_headers.empty()) {
    filters.push_back(std::make_shared<HeaderRewriteFilter>(route));
  }
  return filters;
}

}  // namespace turnpike::proxy
