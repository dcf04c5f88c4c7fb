# Builds one libFuzzer target and runs it for SECONDS seconds (cmake -P script, run by ctest).
# Inputs: FUZZ_CXX, BUILD_DIR, TARGET, BINARY, SEEDS (committed seed corpus), WORK (scratch
# corpus in the build tree, where libFuzzer writes what it finds), SECONDS.
if(NOT FUZZ_CXX)
  message(FATAL_ERROR
    "${TARGET}: clang++-14 was not found when configuring, so the libFuzzer targets cannot be "
    "built. Install clang-14 (apt-get install clang-14) and re-run cmake. Failing on purpose: a "
    "skipped fuzz test must not look like a passing one.")
endif()

execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE build_result)
if(NOT build_result EQUAL 0)
  message(FATAL_ERROR "${TARGET}: building the fuzz target failed (${build_result})")
endif()

file(MAKE_DIRECTORY ${WORK})
# Crash reproducers (crash-*, leak-*, timeout-*) land in the working directory: the build tree.
get_filename_component(work_parent ${WORK} DIRECTORY)
execute_process(
  COMMAND ${BINARY} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 ${WORK} ${SEEDS}
  WORKING_DIRECTORY ${work_parent}
  RESULT_VARIABLE fuzz_result)
if(NOT fuzz_result EQUAL 0)
  message(FATAL_ERROR "${TARGET}: the fuzzer found a failing input (exit ${fuzz_result}); the "
                      "reproducer was written to ${work_parent}")
endif()
message(STATUS "${TARGET}: no failure in ${SECONDS} seconds")
