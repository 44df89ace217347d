// respool-test: concurrency
// Barging with a starvation threshold (Go's sync.Mutex rule, DESIGN.md):
// while the longest waiter has waited less than Options::starvation_threshold
// a running acquirer may take a just-released resource ahead of it; past it
// (or with a threshold of zero) a released resource goes straight to the
// longest waiter. And whatever the mode, no resource sits idle while a
// waiter sleeps (no lost wakeup), which the hammer below checks with
// timeouts, discards and resizes in the mix.

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "respool/async.hpp"
#include "respool/resource.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using respool::Lease;
using respool::Resource;
using respool_test::eventually;

namespace {

Resource<int>::Options options(std::size_t limit, std::chrono::nanoseconds threshold) {
  Resource<int>::Options o;
  o.limit = limit;
  // The factory runs outside the pool's lock, on several threads at once.
  o.create = [n = std::make_shared<std::atomic<int>>(0)] { return ++*n; };
  o.starvation_threshold = threshold;
  return o;
}

}  // namespace

TEST_CASE("barging: a running acquirer may take a released resource ahead of a fresh waiter",
          "[resource][fairness]") {
  Resource<int> pool(options(1, 1h));  // nobody starves within the test
  auto held = pool.acquire();
  std::promise<void> may_finish;
  auto waiter = std::async(std::launch::async, [&] {
    auto lease = pool.acquire();
    may_finish.get_future().wait();
    return *lease;
  });
  REQUIRE(eventually([&] { return pool.stats().waiting == 1; }));
  held.release();  // to the idle stack; the waiter is woken to come for it
  // A newcomer may take it first (the waiter may also have been quicker).
  auto barged = pool.try_acquire();
  if (barged) {
    CHECK(pool.stats().in_use == 1);
    barged->release();  // the woken waiter, back to sleep or not yet awake, gets it now
  }
  may_finish.set_value();
  CHECK(waiter.get() == 1);
  CHECK(pool.stats().waiting == 0);
  CHECK(pool.stats().in_use == 0);
}

TEST_CASE("barging: past the threshold a released resource goes straight to the longest waiter",
          "[resource][fairness]") {
  // Zero: strict first come, first served. One nanosecond: every parked
  // waiter is starving at once, the same rule by the threshold.
  for (auto threshold : {std::chrono::nanoseconds(0), std::chrono::nanoseconds(1)}) {
    INFO("threshold " << threshold.count() << " ns");
    Resource<int> pool(options(1, threshold));
    auto held = pool.acquire();
    std::promise<void> may_finish;
    auto waiter = std::async(std::launch::async, [&] {
      auto lease = pool.acquire();
      may_finish.get_future().wait();
      return *lease;
    });
    REQUIRE(eventually([&] { return pool.stats().waiting == 1; }));
    held.release();
    CHECK_FALSE(pool.try_acquire());  // the waiter owns it, awake or not
    CHECK(pool.stats().in_use == 1);
    may_finish.set_value();
    CHECK(waiter.get() == 1);
  }
}

TEST_CASE("barging: a waiter that keeps losing the race is served once it starves", "[resource][fairness]") {
  // Threshold 1 ms: the main thread releases and re-acquires in a tight
  // loop (the barging pattern). The waiter must get the resource; without
  // starvation mode it could lose every race for as long as the loop runs.
  Resource<int> pool(options(1, 1ms));
  auto held = pool.acquire();
  std::atomic<bool> served{false};
  auto waiter = std::async(std::launch::async, [&] {
    auto lease = pool.acquire();
    served = true;
  });
  REQUIRE(eventually([&] { return pool.stats().waiting == 1; }));
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (!served && std::chrono::steady_clock::now() < give_up) {
    held.release();
    if (auto again = pool.try_acquire())
      held = std::move(*again);
    else if (!served)
      held = pool.acquire();  // queued behind the starving waiter: served after it
  }
  held.release();
  waiter.get();
  CHECK(served);
}

TEST_CASE("barging hammer: no resource sits idle while a waiter sleeps", "[resource][fairness][stress]") {
  const int rounds = respool_test::sanitized ? 300 : 3000;
  for (std::size_t limit : {1u, 2u, 3u}) {
    INFO("limit " << limit);
    Resource<int> pool(options(limit, 200us));
    boost::asio::io_context io;
    auto work = boost::asio::make_work_guard(io);
    std::thread io_thread([&] { io.run(); });
    std::atomic<int> async_done{0}, timeouts{0};
    std::vector<std::thread> threads;
    const int n = 6;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        std::mt19937 rng(static_cast<unsigned>(i));
        for (int r = 0; r < rounds; ++r) {
          try {
            switch (rng() % 8) {
              case 0: {  // a short timed wait: woken waiters time out too
                auto lease = pool.acquire(50us);
                break;
              }
              case 1: {  // a discard frees capacity instead of a resource
                auto lease = pool.acquire();
                lease.discard();
                break;
              }
              case 2: {
                if (auto lease = pool.try_acquire()) lease->release();
                break;
              }
              case 3: {  // an async waiter in the same queue
                std::promise<void> done;
                pool.async_acquire(boost::asio::bind_executor(io, [&](std::error_code, Lease<int> lease) {
                  lease.release();
                  ++async_done;
                  done.set_value();
                }));
                done.get_future().wait();
                break;
              }
              default: {
                auto lease = pool.acquire();
                std::this_thread::yield();
                break;
              }
            }
          } catch (const respool::limit_exceeded&) {
            ++timeouts;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    work.reset();
    io_thread.join();
    const auto stats = pool.stats();
    CHECK(stats.in_use == 0);
    CHECK(stats.waiting == 0);
    CHECK(stats.idle <= limit);
    // Every resource still acquirable: nothing was lost in a hand-off.
    std::vector<Lease<int>> all;
    for (std::size_t k = 0; k < limit; ++k) all.push_back(pool.acquire(10s));
    CHECK_FALSE(pool.try_acquire());
  }
}
