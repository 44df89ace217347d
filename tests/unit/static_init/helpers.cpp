// What starter.cpp's static objects do with the process-wide pools.
#include <respool/respool.hpp>

#include "static_init.hpp"

namespace static_init {

void use_pools_at_startup() {
  auto& pool = respool::pools::connections["memory://static-init/"];
  {
    auto lease = pool.acquire();
    lease->connect();
  }
  auto producer = respool::pools::producers["memory://static-init/"].acquire();
  producer->publish({{"from", "a static constructor"}}, respool::PublishOptions{});
  limit_seen = respool::pools::connections.limit();
  groups_seen = respool::pools::connections.size();
}

void use_pools_at_exit() {
  // Static destructors may use them too (the groups are never destroyed).
  respool::pools::connections["memory://static-init/"].acquire();
  respool::pools::reset();
}

}  // namespace static_init
