// respool-test: concurrency
// Lifetime torture: pools destroyed while sync waiters sleep in acquire(),
// async operations are queued on a multi-thread io_context, their timers
// are expiring, and leases are still out. Run under ASan and TSan (the
// concurrency label) and repeated by tests/run: a core freed under a thread
// that still uses it shows up here, not on a user's machine.

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "respool/async.hpp"
#include "respool/connection_pool.hpp"
#include "respool/resource.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using respool::Lease;
using respool::Resource;

namespace {

using respool_test::eventually;

constexpr int rounds = respool_test::sanitized ? 150 : 600;

}  // namespace

TEST_CASE("lifetime: a pool destroyed under sleeping sync waiters wakes them with pool_closed",
          "[lifetime]") {
  for (int round = 0; round < rounds; ++round) {
    auto pool = std::make_unique<Resource<int>>(1, [] { return 7; });
    auto held = pool->acquire();
    Resource<int>* raw = pool.get();
    std::vector<std::future<int>> waiters;
    for (int i = 0; i < 3; ++i) {
      waiters.push_back(std::async(std::launch::async, [raw, i] {
        try {
          // Untimed and timed waits both sleep on the core's condition variable.
          if (i == 0)
            raw->acquire();
          else
            raw->acquire(60s);
          return 1;  // must not happen: the only resource is held
        } catch (const respool::pool_closed&) {
          return 0;
        }
      }));
    }
    REQUIRE(eventually([&] { return pool->stats().waiting == 3; }));
    pool.reset();  // wakes the three, which still have to re-lock the core's mutex
    CHECK(*held == 7);
    held.release();  // the last lease: the core goes as soon as nobody is inside it
    for (auto& w : waiters) CHECK(w.get() == 0);
  }
}

TEST_CASE("lifetime: an async operation that ends while the destroyed pool runs its close hooks",
          "[lifetime]") {
  // Deterministic interleaving: the pool's destructor closes two idle
  // resources; the first close waits until an async operation has completed
  // on the io thread (its handler set `handled`, and the operation is let go
  // right after); the second close then still needs the pool's internals.
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread io_thread([&] { io.run(); });
  for (int round = 0; round < rounds / 10 + 1; ++round) {
    std::atomic<bool> handled{false};
    std::atomic<int> closes{0};
    auto pool = std::make_unique<Resource<int>>(
        Resource<int>::Options{2,
                               0,
                               [] { return 1; },
                               [&](int&) {
                                 if (closes.fetch_add(1) == 0) {
                                   while (!handled.load()) std::this_thread::yield();
                                   // Widen the window in which the operation drops its reference.
                                   const auto until = std::chrono::steady_clock::now() + 2ms;
                                   while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
                                 }
                               },
                               {},
                               {},
                               {}});
    {
      auto a = pool->acquire();
      auto b = pool->acquire();
      // Queued, then timed out: its completion is posted to the io thread,
      // where the handler waits for the first close to begin.
      pool->async_acquire(1us, boost::asio::bind_executor(io, [&](boost::system::error_code, Lease<int>) {
                            while (closes.load() == 0) std::this_thread::yield();
                            handled = true;
                          }));
      REQUIRE(eventually([&] { return pool->stats().timeouts == 1; }));
    }  // a and b go idle
    pool.reset();
    CHECK(closes.load() == 2);
  }
  work.reset();
  io_thread.join();
}

TEST_CASE("lifetime: a pool destroyed while async operations complete on a multi-thread io_context",
          "[lifetime]") {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&] { io.run(); });

  std::atomic<int> completed{0};
  std::atomic<int> served_even{0};  // rounds that release `a` before the destruction
  std::atomic<int> served_odd{0};   // rounds that release nothing before it
  int started = 0;
  std::atomic<int> closes{0};  // outlives every core (their close hooks run late)
  for (int round = 0; round < rounds; ++round) {
    auto pool = std::make_unique<Resource<int>>(
        Resource<int>::Options{2, 0, [] { return 1; }, [&closes](int&) { closes.fetch_add(1); }, {}, {}, {}});
    auto a = pool->acquire();
    auto b = pool->acquire();
    auto handler = [&, even = round % 2 == 0](boost::system::error_code ec, Lease<int> lease) {
      if (!ec) (even ? served_even : served_odd).fetch_add(1);
      lease.release();  // may be the last reference to the core
      completed.fetch_add(1);
    };
    // Queued ones (one untimed, timers that expire now or later), then a
    // release that serves the oldest of them on an io thread, racing with the
    // destruction below. The served handler's own release may serve the next
    // waiter still queued, and so on, until the destruction closes the queue.
    pool->async_acquire(boost::asio::bind_executor(io, handler));
    pool->async_acquire(1us, boost::asio::bind_executor(io, handler));
    pool->async_acquire(50us, boost::asio::bind_executor(io, handler));
    pool->async_acquire(60s, boost::asio::bind_executor(io, handler));
    started += 4;
    if (round % 2 == 0) a.release();
    pool.reset();
    a.release();
    b.release();
  }
  REQUIRE(eventually([&] { return completed.load() == started; }));
  work.reset();
  for (auto& t : threads) t.join();
  // Nothing is served in a round whose leases all come back after the
  // destruction; in the others the untimed waiter, granted before it, always
  // is, and a chain of releases serves at most the four waiters.
  CHECK(served_odd.load() == 0);
  CHECK(served_even.load() >= (rounds + 1) / 2);
  CHECK(served_even.load() <= 4 * ((rounds + 1) / 2));
}

TEST_CASE("lifetime: leases and async operations of many pools released from many threads", "[lifetime]") {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) threads.emplace_back([&] { io.run(); });
  std::atomic<int> completed{0};
  int started = 0;
  for (int round = 0; round < rounds; ++round) {
    auto pool = std::make_unique<respool::ConnectionPool>("memory://lifetime/", 1);
    auto held = pool->acquire();
    held->connect();
    pool->async_acquire(boost::asio::bind_executor(
        io, [&](boost::system::error_code, Lease<respool::Connection>) { completed.fetch_add(1); }));
    ++started;
    auto releaser = std::async(std::launch::async, [l = std::move(held)]() mutable { l.release(); });
    pool.reset();
    releaser.get();
  }
  REQUIRE(eventually([&] { return completed.load() == started; }));
  work.reset();
  for (auto& t : threads) t.join();
}
