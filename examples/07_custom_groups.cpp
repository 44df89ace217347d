// Custom pool groups with their own limit.
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;

  // [custom]
  pools::Connections connections(100);
  pools::Producers producers(connections.limit());
  // [custom]

  auto& pool = connections["memory://"];
  std::printf("custom group limit %zu, pool limit %zu, distinct from the global pool: %s\n",
              connections.limit(), pool.limit(), &pool != &pools::connections["memory://"] ? "yes" : "no");
  {
    auto producer = producers["memory://"].acquire();
    PublishOptions options;
    options.routing_key = "nowhere";  // default exchange, no such queue: dropped, not an error
    producer->publish({{"hello", "custom"}}, options);
  }
  pools::set_limit(5);  // does not touch a group with its own limit
  std::printf("after set_limit(5): custom pool limit still %zu\n", pool.limit());
  return pool.limit() == 100 ? 0 : 1;
}
