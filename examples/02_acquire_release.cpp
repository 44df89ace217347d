// Acquire and release explicitly, with a timeout, and without waiting.
#include <chrono>
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;
  using namespace std::chrono_literals;

  ConnectionPool pool("memory://", /*limit=*/2);

  // [acquire]
  Lease<Connection> conn = pool.acquire(1s);  // waits at most a second
  try {
    std::printf("connected: %s\n", conn->default_channel().connection().connected() ? "yes" : "no");
  } catch (...) {
    conn.release();  // explicit early release (the destructor would do it too)
    throw;
  }
  conn.release();
  std::printf("after release: in use %zu, idle %zu\n", pool.stats().in_use, pool.stats().idle);
  // [acquire]

  // [limits]
  auto first = pool.acquire();
  auto second = pool.acquire();
  if (!pool.try_acquire()) std::printf("try_acquire: pool full (limit %zu)\n", pool.limit());
  try {
    pool.acquire(0s);  // kombu block=False
  } catch (const connection_limit_exceeded& e) {
    std::printf("acquire(0s): %s\n", e.what());
  }
  try {
    pool.acquire(50ms);
  } catch (const acquire_timeout& e) {
    std::printf("acquire(50ms): %s\n", e.what());
  }
  // [limits]
  second.discard();  // close it and free its slot (kombu replace)
  auto third = pool.acquire(0s);
  auto stats = pool.stats();
  std::printf("stats: limit %zu in_use %zu idle %zu created %zu closed %zu timeouts %zu\n", stats.limit,
              stats.in_use, stats.idle, stats.created, stats.closed, stats.timeouts);
  return stats.timeouts == 2 && stats.in_use == 2 ? 0 : 1;
}
