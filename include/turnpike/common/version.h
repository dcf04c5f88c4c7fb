// What this binary is: the project version and the git commit it was built from, baked in at
// build time (cmake/version.cmake). For `turnpike --version`, the startup log and build info.
#pragma once

#include <string_view>

namespace turnpike {

std::string_view version() noexcept;     // "0.1.0" (CMakeLists.txt's project VERSION)
std::string_view git_commit() noexcept;  // "0123456789ab", "...-dirty", or "unknown"

}  // namespace turnpike
