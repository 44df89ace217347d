// Metrics (a PoolObserver after OpenTelemetry's connection-pool conventions), the reaper and the pool
// executor.
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <respool/async.hpp>
#include <respool/respool.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

// [observer]
// Feeds db.client.connection.* instruments; here it just sums them.
struct Metrics final : respool::PoolObserver {
  std::atomic<long long> create_ns{0}, wait_ns{0}, use_ns{0};
  std::atomic<int> creates{0}, waits{0}, uses{0}, timeouts{0};
  void on_create(std::chrono::nanoseconds d) override { creates++, create_ns += d.count(); }  // create_time
  void on_wait(std::chrono::nanoseconds d) override { waits++, wait_ns += d.count(); }        // wait_time
  void on_use(std::chrono::nanoseconds d) override { uses++, use_ns += d.count(); }           // use_time
  void on_timeout() override { timeouts++; }                                                  // timeouts
};
// [observer]

static double ms(long long ns, int n) { return n == 0 ? 0.0 : static_cast<double>(ns) / n / 1e6; }

int main() {
  asio::io_context io;
  Metrics metrics;
  // [executor]
  respool::ConnectionPool pool("memory://metrics-demo/", 4);
  respool::PoolPolicy policy;
  policy.observer = &metrics;
  policy.idle_timeout = 5min;
  policy.min_idle = 2;  // the reaper keeps two warm connections
  pool.set_policy(policy);
  pool.set_executor(respool::pool_executor(io.get_executor()));  // handlers without an executor run on io
  respool::Reaper reaper(pool, io.get_executor(), 10ms);         // maintain() every 10 ms, on io
  // [executor]

  int done = 0;
  for (int i = 0; i < 3; ++i) {
    pool.async_acquire([&](boost::system::error_code ec, respool::Lease<respool::Connection> conn) {
      if (!ec) conn->default_channel();  // connects (memory://) and uses it
      ++done;
    });
  }
  while (done < 3) io.run_one();  // the handlers run on io: the pool's executor
  {
    auto a = pool.acquire(), b = pool.acquire(), c = pool.acquire(), d = pool.acquire();
    try {
      pool.acquire(0s);
    } catch (const respool::connection_limit_exceeded&) {
    }
  }
  while (reaper.passes() < 2) io.run_one();  // two reaper passes
  reaper.stop();
  io.run();

  // [gauges]
  // Usage by state, pending requests and the limit are gauges: read them from stats().
  const respool::PoolStats s = pool.stats();
  std::printf("db.client.connection.count{state=idle} %zu\n", s.idle);
  std::printf("db.client.connection.count{state=used} %zu\n", s.in_use);
  std::printf("db.client.connection.pending_requests %zu\n", s.waiting);
  std::printf("db.client.connection.max %zu\n", s.limit);
  // [gauges]
  std::printf("db.client.connection.timeouts %d\n", metrics.timeouts.load());
  std::printf("db.client.connection.create_time n=%d mean %.3f ms\n", metrics.creates.load(),
              ms(metrics.create_ns, metrics.creates));
  std::printf("db.client.connection.wait_time n=%d mean %.3f ms\n", metrics.waits.load(),
              ms(metrics.wait_ns, metrics.waits));
  std::printf("db.client.connection.use_time n=%d mean %.3f ms\n", metrics.uses.load(),
              ms(metrics.use_ns, metrics.uses));
  std::printf("stats: peak in use %zu, waits %zu\n", s.peak_in_use, s.waits);
}
