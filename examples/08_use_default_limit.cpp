// A custom group that follows the global limit.
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;

  // [default]
  pools::Connections connections(use_default_limit);
  // [default]

  auto& pool = connections["memory://"];
  std::printf("follows the default: limit %zu\n", pool.limit());
  pools::set_limit(42);
  std::printf("after set_limit(42): limit %zu\n", pool.limit());
  return pool.limit() == 42 ? 0 : 1;
}
