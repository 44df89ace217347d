// Checks what starter.cpp's static constructor did with the process-wide
// pools. Built twice by tests/CMakeLists.txt, with the translation units
// linked in opposite orders, so that starter.cpp's static objects run before
// and after respool's own static initialisation in helpers.cpp.
#include <cstdio>
#include <respool/respool.hpp>

#include "static_init.hpp"

int main() {
  if (static_init::limit_seen != 200) {
    std::printf("FAIL: limit seen %zu, expected 200\n", static_init::limit_seen);
    return 1;
  }
  if (static_init::groups_seen != 1) {
    std::printf("FAIL: %zu connection pools seen, expected 1\n", static_init::groups_seen);
    return 1;
  }
  auto stats = respool::pools::connections["memory://static-init/"].stats();
  if (stats.created != 1 || stats.idle != 1) {
    std::printf("FAIL: created %zu, idle %zu\n", stats.created, stats.idle);
    return 1;
  }
  std::printf("static initialisation order: ok\n");
  return 0;
}
