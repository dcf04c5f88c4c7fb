// Builds a route's filter chain from its config (built-in filters; Lua plugins will join here).
#pragma once

#include <memory>
#include <vector>

#include "turnpike/config/config.h"
#include "turnpike/proxy/filter.h"

namespace turnpike::proxy {

std::vector<std::shared_ptr<const HttpFilter>> build_route_filters(const config::RouteConfig& route);

}  // namespace turnpike::proxy
