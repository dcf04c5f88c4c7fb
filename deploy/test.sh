#!/usr/bin/env bash
# Installs dependencies, builds Turnpike with AddressSanitizer + UndefinedBehaviorSanitizer and
# runs every test: unit tests, integration tests against the real binary on loopback, and a short
# run of each libFuzzer target.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
jobs=$(nproc)
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTURNPIKE_SANITIZE=ON >/dev/null
cmake --build build-test -j"$jobs"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir build-test --output-on-failure -j"$jobs" --timeout 600
