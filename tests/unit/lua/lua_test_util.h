// Helpers for the runtime's tests: a temporary plugin directory and a Vm over it.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "turnpike/lua/vm.h"

namespace turnpike::lua::test {

class LuaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tp_lua_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    vm_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Writes `name`.lua into the user plugin directory.
  void write_plugin(const std::string& name, const std::string& source) {
    std::ofstream(dir_ / (name + ".lua")) << source;
  }

  Vm& vm() {
    if (!vm_) {
      VmConfig cfg = config_;
      cfg.bundled_dir = TURNPIKE_PLUGINS_DIR;
      cfg.plugin_paths.push_back(dir_.string());
      std::string error;
      vm_ = Vm::create(cfg, error);
      EXPECT_TRUE(vm_) << error;
    }
    return *vm_;
  }

  // Loads plugins that must load.
  std::shared_ptr<const Generation> load(const std::vector<std::string>& names) {
    std::vector<std::string> errors;
    auto gen = vm().load(names, errors);
    EXPECT_TRUE(gen) << (errors.empty() ? "" : errors[0]);
    return gen;
  }

  // Loading errors of plugins that must not load.
  std::vector<std::string> load_errors(const std::vector<std::string>& names) {
    std::vector<std::string> errors;
    auto gen = vm().load(names, errors);
    EXPECT_FALSE(gen);
    return errors;
  }

  // The result of a chunk that must succeed.
  std::string eval(const std::string& source) {
    std::string error;
    std::string result = vm().run_chunk(source, error);
    EXPECT_EQ(error, "") << source;
    return result;
  }

  // Runs one call to completion on a private io_context.
  CallResult run_call(std::shared_ptr<const Generation> gen, size_t plugin, Phase phase,
                      const Ref& conf, const Ref& ctx, tp_request* request = nullptr) {
    boost::asio::io_context io;
    auto future = boost::asio::co_spawn(io, vm().call(gen, plugin, phase, conf, ctx, request),
                                        boost::asio::use_future);
    io.run();
    return future.get();
  }

  // A minimal valid plugin whose `phase` function has `body`.
  static std::string plugin_source(const std::string& name, const std::string& phase,
                                   const std::string& body) {
    return "local turnpike = require 'turnpike'\n"
           "return { name = '" + name + "', priority = 1, schema = { type = 'object' },\n"
           "  " + phase + " = function(conf, ctx)\n" + body + "\nend }\n";
  }

  VmConfig config_;
  std::filesystem::path dir_;
  std::unique_ptr<Vm> vm_;
};

}  // namespace turnpike::lua::test
