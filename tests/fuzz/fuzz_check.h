// FUZZ_CHECK for the libFuzzer targets: an invariant check that stays on in every build.
#pragma once

#include <cstdio>
#include <cstdlib>

// Unlike assert(), stays on in every build: a broken invariant is the finding.
#define FUZZ_CHECK(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)
