// respool-test: concurrency
// The cap across keys (PoolGroup::set_max_total) under contention: threads
// acquiring (waiting, zero-wait, try_acquire) across many keys and making
// new keys, async acquires on an io_context, idle expiry and leak reports
// (an injected clock moved by hand, maintain() passes), lifetime retirement,
// discards and group resets, all at once on a group whose cap is far below
// limit x keys. Checked throughout: no more leases out at once than
// max_total. At the end: nothing waits, and the whole cap is usable again
// (no unit lost), and no more than it.

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "respool/async.hpp"
#include "respool/pool_group.hpp"
#include "respool/resource.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using respool::Lease;
using respool::PoolGroup;
using respool::PoolPolicy;
using respool::Resource;
using time_point = std::chrono::steady_clock::time_point;

using Pool = Resource<int>;
using Group = PoolGroup<std::string, Pool>;

constexpr std::size_t max_total =
    4;  // below the 6 acquirers that each hold one lease at a time: the cap binds
constexpr std::size_t per_key = 3;
constexpr int keys = 12;

struct Shared {
  std::atomic<std::int64_t> clock_ns{std::chrono::nanoseconds(1h).count()};
  std::atomic<int> created{0};
  std::atomic<int> closed{0};
  std::atomic<int> leaks{0};
  std::atomic<int> held{0};  // leases out right now (taken after acquire, given before release)
  std::atomic<int> most_held{0};
  std::atomic<int> new_keys{0};

  time_point now() const { return time_point(std::chrono::nanoseconds(clock_ns.load())); }

  void hold() {
    const int h = ++held;
    int m = most_held.load();
    while (h > m && !most_held.compare_exchange_weak(m, h)) {
    }
  }
  void drop() { --held; }
};

Group::factory_type factory(Shared& sh) {
  return [&sh](const std::string&, std::size_t limit) {
    Pool::Options o;
    o.limit = limit;
    o.create = [&sh] { return ++sh.created; };
    o.close = [&sh](int&) { ++sh.closed; };
    o.clock = [&sh] { return sh.now(); };
    o.policy.idle_timeout = 50ms;
    o.policy.max_lifetime = 500ms;
    o.policy.leak_threshold = 20ms;
    o.policy.on_leak = [&sh](const respool::LeakInfo&) { ++sh.leaks; };
    return std::make_unique<Pool>(std::move(o));
  };
}

std::string key(unsigned i) { return "k" + std::to_string(i % keys); }

}  // namespace

TEST_CASE("max_total stress: the cap holds across keys under expiry, leaks, resets and new keys",
          "[max_total][stress]") {
  Shared sh;
  Group g(per_key, factory(sh));
  g.set_max_total(max_total);
  const int rounds = respool_test::sanitized ? 1000 : 20000;
  std::atomic<bool> stop{false};
  std::atomic<int> closed_errors{0};
  std::atomic<int> refusals{0};

  auto use = [&](Lease<int>& lease, unsigned r) {
    sh.hold();  // (checked at the end: most_held; Catch's CHECK is not for other threads)
    if (r % 7 == 0) std::this_thread::yield();
    sh.drop();
    if (r % 11 == 0)
      lease.discard();
    else
      lease.release();
  };

  std::vector<std::thread> threads;
  // Waiting acquirers, each on its own walk over the keys (one lease at a time).
  for (unsigned t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (unsigned r = 0; r < static_cast<unsigned>(rounds); ++r) {
        try {
          Lease<int> lease = (r % 2 == 0) ? g[key(t * 5 + r)].acquire() : g[key(t * 5 + r)].acquire(10s);
          use(lease, r);
        } catch (const respool::pool_closed&) {
          ++closed_errors;  // a reset caught it waiting
        }
      }
    });
  }
  // Zero-wait and try acquirers.
  threads.emplace_back([&] {
    for (unsigned r = 0; r < static_cast<unsigned>(rounds); ++r) {
      try {
        if (r % 2 == 0) {
          if (auto lease = g[key(r * 3)].try_acquire()) {
            use(*lease, r);
          } else {
            ++refusals;
          }
        } else {
          Lease<int> lease = g[key(r * 3)].acquire(0s);
          use(lease, r);
        }
      } catch (const respool::limit_exceeded&) {
        ++refusals;
      } catch (const respool::pool_closed&) {
        ++closed_errors;
      }
    }
  });
  // New keys, made while the others run (each used once, waiting).
  threads.emplace_back([&] {
    for (int r = 0; r < rounds / 10; ++r) {
      try {
        Lease<int> lease = g["new" + std::to_string(sh.new_keys++)].acquire();
        use(lease, static_cast<unsigned>(r));
      } catch (const respool::pool_closed&) {
        ++closed_errors;
      }
    }
  });
  // Time: the clock moves, maintenance passes close expired idle resources and report leaks; a few resets.
  std::thread clock_thread([&] {
    unsigned r = 0;
    while (!stop.load()) {
      sh.clock_ns.fetch_add(std::chrono::nanoseconds(7ms).count());
      g.for_each([](Pool& pool) { pool.maintain(); });
      if (++r % 50 == 0) g.reset();
      std::this_thread::yield();
    }
  });
  // Async acquires on an io_context, chained.
  boost::asio::io_context io;
  const int async_ops = respool_test::sanitized ? 500 : 5000;
  std::atomic<int> async_done{0};
  std::function<void(int)> start_async = [&](int i) {
    if (i == async_ops) return;
    const std::chrono::steady_clock::duration timeout =
        (i % 3 == 0) ? 0s : std::chrono::steady_clock::duration(10s);
    g[key(static_cast<unsigned>(i) * 7)].async_acquire(
        timeout, boost::asio::bind_executor(io, [&, i](boost::system::error_code ec, Lease<int> lease) {
          if (!ec) use(lease, static_cast<unsigned>(i));
          ++async_done;
          start_async(i + 1);
        }));
  };
  start_async(0);
  std::thread io_thread([&] { io.run(); });

  for (auto& t : threads) t.join();
  io_thread.join();
  stop = true;
  clock_thread.join();
  CHECK(async_done == async_ops);
  CHECK(sh.most_held.load() <= static_cast<int>(max_total));

  // Quiet now: nothing waits; every unit is back: max_total leases on as
  // many fresh keys (closing idle ones of others as needed), and not one more.
  std::vector<Lease<int>> all;
  for (std::size_t i = 0; i < max_total; ++i) {
    auto lease = g["final" + std::to_string(i)].try_acquire();
    REQUIRE(lease.has_value());
    all.push_back(std::move(*lease));
  }
  CHECK_FALSE(g["final-extra"].try_acquire().has_value());
  all.clear();
  g.for_each([](Pool& pool) { CHECK(pool.stats().waiting == 0); });
  INFO("created " << sh.created << ", closed " << sh.closed << ", leaks " << sh.leaks << ", refusals "
                  << refusals << ", closed by reset " << closed_errors);
  CHECK(sh.created.load() >= static_cast<int>(max_total));
}
