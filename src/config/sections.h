// The config loader's sections, shared between loader.cc (top level, log, limits, listeners,
// upstreams) and routes.cc (routes and their header rules). Private to src/config/.
#pragma once

#include <string>
#include <string_view>

#include "yaml_reader.h"

namespace turnpike::config::detail {

// Names of listeners, upstreams and routes appear in logs and in other items' references, so
// they are kept to printable ASCII without spaces or quotes.
bool valid_name(std::string_view name);
inline constexpr std::string_view kNameRule =
    "must be 1..128 printable ASCII characters without spaces, quotes or backslashes";

// `listener "public"`: how an item is named in messages.
std::string item_name(std::string_view kind, std::string_view name);

// Reads the `routes` list into cfg.routes, checking references against cfg.listeners and
// cfg.upstreams, which must already be loaded.
void load_routes(Diagnostics& diag, const YAML::Node& routes, Config& cfg);

}  // namespace turnpike::config::detail
