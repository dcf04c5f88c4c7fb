// A plugin conf as plain data, for the config loader to hand to Vm::check_conf: YAML (or JSON)
// maps, lists and scalars become ConfValues, which the Vm turns into Lua tables.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace turnpike::lua {

struct ConfValue;
using ConfList = std::vector<ConfValue>;
using ConfMap = std::vector<std::pair<std::string, ConfValue>>;  // in file order

struct ConfValue {
  // null (YAML ~), boolean, number, string, list, map.
  std::variant<std::monostate, bool, double, std::string, ConfList, ConfMap> value;
  int line = 0;  // where it was written (1-based; 0 unknown), for errors about it

  // Same value, wherever it was written.
  bool operator==(const ConfValue& o) const { return value == o.value; }

  ConfValue() = default;
  ConfValue(bool b) : value(b) {}
  ConfValue(double d) : value(d) {}
  ConfValue(int i) : value(static_cast<double>(i)) {}
  ConfValue(const char* s) : value(std::string(s)) {}
  ConfValue(std::string s) : value(std::move(s)) {}
  ConfValue(ConfList l) : value(std::move(l)) {}
  ConfValue(ConfMap m) : value(std::move(m)) {}
};

}  // namespace turnpike::lua
