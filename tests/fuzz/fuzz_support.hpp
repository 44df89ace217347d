// What the libFuzzer targets of tests/fuzz/ share: a broken invariant aborts
// (libFuzzer then saves the input), a nesting depth measured without
// recursion, and limits small enough for small inputs to reach.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <respool/message.hpp>
#include <utility>
#include <vector>

namespace respool_fuzz {

// Aborts, naming the invariant, unless `ok`.
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

// The nesting depth of arrays and objects. Iterative, so that checking the
// bound cannot itself overflow the stack.
inline std::size_t depth_of(const nlohmann::json& j) {
  std::size_t deepest = 0;
  std::vector<std::pair<const nlohmann::json*, std::size_t>> stack{{&j, 0}};
  while (!stack.empty()) {
    auto [v, d] = stack.back();
    stack.pop_back();
    if (v->is_object() || v->is_array()) {
      deepest = std::max(deepest, d + 1);
      for (const auto& child : *v) stack.push_back({&child, d + 1});
    }
  }
  return deepest;
}

// Small limits, so that the fuzzer reaches them with small inputs.
inline respool::MessageLimits small_limits() {
  respool::MessageLimits l;
  l.max_depth = 16;
  l.max_body_size = 1 << 16;
  l.max_header_size = 1 << 12;
  return l;
}

}  // namespace respool_fuzz
