// Setting pool limits: the global limit (200 until set) applies to every
// pool of the global groups, also pools that already exist.
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;

  auto& pool = pools::connections["memory://"];
  std::printf("default limit: %zu (pool: %zu)\n", pools::get_limit(), pool.limit());

  // [set_limit]
  pools::set_limit(100);
  // [set_limit]
  std::printf("after set_limit(100): %zu (pool: %zu)\n", pools::get_limit(), pool.limit());

  auto a = pool.acquire();
  auto b = pool.acquire();
  try {
    pools::set_limit(1);  // two connections are in use
  } catch (const error& e) {
    std::printf("set_limit(1) refused: %s\n", e.what());
  }
  pools::set_limit(1, /*force=*/true);  // force: closes them under our feet
  std::printf("after set_limit(1, force): %zu (pool: %zu)\n", pools::get_limit(), pool.limit());
  return pool.limit() == 1 ? 0 : 1;
}
