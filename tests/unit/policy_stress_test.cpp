// respool-test: concurrency
// The production policies under contention: idle expiry, max lifetime,
// validation bypass, leak detection, min_idle (maintain() passes), the
// observer and set_policy() switching them, all racing with sync, try and
// async acquires on one small pool. Time is an injected clock every thread
// moves forward; the checks are invariants (no closed resource is ever
// handed out, nothing is closed twice, the counters add up), never timings.

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "respool/async.hpp"
#include "respool/resource.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using respool::Lease;
using respool::PoolPolicy;
using respool::Resource;
using time_point = std::chrono::steady_clock::time_point;

constexpr int max_resources = 1 << 18;

struct World {
  std::atomic<std::int64_t> now_ns{std::chrono::nanoseconds(1h).count()};
  std::atomic<int> next_id{0};
  std::unique_ptr<std::atomic<int>[]> state{new std::atomic<int>[max_resources]};  // 0 none, 1 alive, 2 closed
  std::atomic<int> bad_handouts{0};
  std::atomic<int> double_closes{0};
  std::atomic<int> leaks_reported{0};
  std::atomic<int> uses{0};
  std::atomic<int> ops{0};

  World() {
    for (int i = 0; i < max_resources; ++i) state[i].store(0);
  }
  time_point now() const { return time_point(std::chrono::nanoseconds(now_ns.load())); }
  void tick(std::mt19937& rng) { now_ns.fetch_add(std::uniform_int_distribution<int>(0, 3'000'000)(rng)); }
  void check(int id) {
    if (id <= 0 || id >= max_resources || state[id].load() != 1) ++bad_handouts;
  }
};

struct CountingObserver final : respool::PoolObserver {
  explicit CountingObserver(World& w) : world(w) {}
  World& world;
  void on_use(std::chrono::nanoseconds) override { ++world.uses; }
};

PoolPolicy policy_a(World& w, respool::PoolObserver* observer) {
  PoolPolicy p;
  p.idle_timeout = 20ms;
  p.max_lifetime = 50ms;
  p.lifetime_jitter = 0.2;
  p.validation_bypass = 5ms;
  p.leak_threshold = 30ms;
  p.on_leak = [&w](const respool::LeakInfo&) { ++w.leaks_reported; };
  p.min_idle = 2;
  p.observer = observer;
  return p;
}

PoolPolicy policy_b() {
  PoolPolicy p;
  p.max_lifetime = 10ms;
  p.lifetime_jitter = 0;
  return p;
}

TEST_CASE("policy stress: expiry, leaks, min_idle and set_policy race with acquires", "[policy][stress]") {
  World w;
  CountingObserver observer(w);
  Resource<int>::Options o;
  o.limit = 4;
  o.create = [&w] {
    const int id = ++w.next_id;
    if (id >= max_resources) throw std::runtime_error("out of ids");
    w.state[id].store(1);
    return id;
  };
  o.close = [&w](int& id) {
    int expected = 1;
    if (!w.state[id].compare_exchange_strong(expected, 2)) ++w.double_closes;
  };
  o.validate = [&w](int& id) { return w.state[id].load() == 1; };
  o.policy = policy_a(w, &observer);
  o.clock = [&w] { return w.now(); };
  Resource<int> pool(std::move(o));

  const int rounds = respool_test::sanitized ? 400 : 3000;
  std::atomic<bool> stop{false};

  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    for (int i = 0; i < rounds; ++i) {
      w.tick(rng);
      const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
      if (kind < 6) {
        try {
          Lease<int> lease = pool.acquire(1s);
          w.check(*lease);
          w.tick(rng);
          if (kind == 0) w.now_ns.fetch_add(std::chrono::nanoseconds(40ms).count());  // a "leak"
          if (kind == 1) lease.discard();
        } catch (const respool::limit_exceeded&) {
        }
      } else if (kind < 9) {
        if (auto lease = pool.try_acquire()) w.check(**lease);
      } else {
        try {
          Lease<int> a = pool.acquire(0s);
          w.check(*a);
        } catch (const respool::limit_exceeded&) {
        }
      }
      ++w.ops;
    }
  };

  // Async acquirers on an io_context of their own thread.
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread io_thread([&] { io.run(); });
  std::atomic<int> async_done{0};
  const int async_ops = respool_test::sanitized ? 200 : 1500;
  for (int i = 0; i < async_ops; ++i) {
    pool.async_acquire(std::chrono::seconds(1),
                       boost::asio::bind_executor(io, [&](boost::system::error_code ec, Lease<int> lease) {
                         if (!ec) w.check(*lease);
                         ++async_done;
                       }));
  }

  std::thread maintainer([&] {
    while (!stop) {
      pool.maintain();
      std::this_thread::yield();
    }
  });
  // Switches the policies every 500 operations (A, B, off, A...): often
  // enough to race with everything, rarely enough that leases get old under A.
  std::thread switcher([&] {
    int last = 0;
    int pick = 0;
    while (!stop) {
      const int now = w.ops.load() / 500;
      if (now != last) {
        last = now;
        pick = (pick + 1) % 3;
        pool.set_policy(pick == 0 ? policy_a(w, &observer) : pick == 1 ? policy_b() : PoolPolicy{});
        pool.stats();
      }
      std::this_thread::yield();
    }
  });

  std::vector<std::thread> workers;
  for (unsigned t = 0; t < 4; ++t) workers.emplace_back(worker, 1234 + t);
  for (auto& t : workers) t.join();
  REQUIRE(respool_test::eventually([&] { return async_done.load() == async_ops; }));
  stop = true;
  maintainer.join();
  switcher.join();
  work.reset();
  io_thread.join();

  pool.set_policy(policy_a(w, &observer));
  pool.maintain();

  CHECK(w.bad_handouts == 0);
  CHECK(w.double_closes == 0);
  const auto st = pool.stats();
  CHECK(st.in_use == 0);
  CHECK(st.waiting == 0);
  CHECK(st.created - st.closed == st.idle);
  CHECK(st.peak_in_use <= 4);
  CHECK(st.expired <= st.closed);
  CHECK(w.ops == 4 * rounds);
  CHECK(st.expired > 0);  // the policies did fire while racing
  CHECK(st.leaks > 0);
  CHECK(w.uses > 0);
  CHECK(st.leaks == static_cast<std::size_t>(w.leaks_reported.load()));  // each leak reported to the callback
  int alive = 0;
  for (int id = 1; id <= w.next_id && id < max_resources; ++id) alive += w.state[id].load() == 1 ? 1 : 0;
  CHECK(alive == static_cast<int>(st.idle));
}

}  // namespace
