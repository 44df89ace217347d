// Resetting all pools: force-close every connection and forget the pools.
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;

  { auto conn = pools::connections["memory://"].acquire(); }
  { auto producer = pools::producers["memory://"].acquire(); }
  std::printf("before reset: %zu connection pool(s), %zu producer pool(s)\n", pools::connections.size(),
              pools::producers.size());

  // [reset]
  pools::reset();
  // [reset]

  std::printf("after reset: %zu connection pool(s), %zu producer pool(s)\n", pools::connections.size(),
              pools::producers.size());
  return pools::connections.size() == 0 ? 0 : 1;
}
