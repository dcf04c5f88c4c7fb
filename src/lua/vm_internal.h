// Pieces shared by the Vm's source files (not part of the public interface).
#pragma once

#include <lua.hpp>

#include "turnpike/lua/pdk.h"

namespace turnpike::lua {

// How often the count hook runs, in interpreted VM instructions: rarely enough to cost little,
// often enough that a runaway loop is stopped within microseconds of its budget.
inline constexpr int kHookEvery = 1000;
inline constexpr const char* kBudgetMessage = "instruction budget exceeded";

// The first value a PDK yield passes to coroutine.yield, so a plugin's own bare yield cannot be
// mistaken for one (plugins/lib/turnpike.lua receives its address as bridge.yield_tag).
inline constexpr char kYieldTag = 0;
// The key (a light userdata) under which a request's ctx table holds its environment: the
// consumers of the request's config generation (Vm::make_env), read by turnpike.consumer.
inline constexpr char kEnvKey = 0;

// The shared-dictionary functions the FFI side calls (shared_dict_ffi.cc).
const tp_shared_api& shared_api();

// Pushes the table of request functions as lua_CFunctions (pdk_classic.cc).
void push_classic_request(lua_State* L, tp_pdk_current* cur);
// Pushes open(name) -> the shared dictionary's methods as lua_CFunctions, or nil.
void push_classic_shared_open(lua_State* L, tp_pdk_current* cur);

// tostring() of the value at `index` for the common cases, without calling into Lua.
inline const char* luaL_tolstring_compat(lua_State* L, int index) {
  switch (lua_type(L, index)) {
    case LUA_TNIL: return "nil";
    case LUA_TBOOLEAN: return lua_toboolean(L, index) ? "true" : "false";
    case LUA_TNUMBER:
    case LUA_TSTRING: return lua_tostring(L, index);
    default: return lua_typename(L, lua_type(L, index));
  }
}

}  // namespace turnpike::lua
