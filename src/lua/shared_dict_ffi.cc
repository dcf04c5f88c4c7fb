// The shared-dictionary functions behind tp_shared_api (pdk.h), called from Lua through FFI.
#include "vm_internal.h"

namespace turnpike::lua {

const tp_shared_api& shared_api() {
  static const tp_shared_api api{};
  return api;
}

}  // namespace turnpike::lua
