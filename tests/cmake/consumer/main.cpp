// What a respool user writes first: a pool of two ints, one lease.
#if __has_include(<respool/respool.hpp>)
#include <respool/respool.hpp>
#else
#include <respool/resource.hpp>
#endif

#include <iostream>

int main() {
  int next = 41;
  respool::Resource<int> pool(2, [&next] { return ++next; });
  auto lease = pool.acquire();
  std::cout << "lease: " << *lease << '\n';
  return *lease == 42 ? 0 : 1;
}
