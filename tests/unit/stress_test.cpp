// respool-test: concurrency
// Stress tests of the core pool: many threads mixing every kind of acquire
// (untimed, zero and short timeouts, try_acquire, discard, async with
// cancellation on a two-thread io_context) against a small limit, checking
// that the limit is never exceeded, that no resource is ever held twice, and
// that every resource created ends up idle, in use or closed.
//
// 16 threads x 100k operations; under a sanitizer, 16 x 5k.

#include <algorithm>
#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "respool/async.hpp"
#include "respool/resource.hpp"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define RESPOOL_STRESS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define RESPOOL_STRESS_SANITIZED 1
#endif
#endif

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using respool::Lease;
using respool::PoolStats;
using respool::Resource;

#if defined(RESPOOL_STRESS_SANITIZED)
constexpr int ops_per_thread = 5000;
#else
constexpr int ops_per_thread = 100000;
#endif
constexpr int thread_count = 16;

// A pooled resource that knows how many hold it right now (must be 0 or 1).
struct Res {
  int id = 0;
  std::unique_ptr<std::atomic<int>> holders = std::make_unique<std::atomic<int>>(0);
  std::unique_ptr<std::atomic<bool>> closed = std::make_unique<std::atomic<bool>>(false);
};

struct factory_error : std::runtime_error {
  factory_error() : std::runtime_error("factory failed") {}
};

// Everything the threads count; checked at the end on the test thread (Catch2
// assertions are not thread-safe).
struct Ledger {
  std::atomic<int> created{0};
  std::atomic<int> closed{0};
  std::atomic<int> factory_calls{0};
  std::atomic<int> factory_failures{0};
  std::atomic<int> closed_while_held{0};
  std::atomic<int> handed_closed{0};  // leases that got a resource already closed
  std::atomic<int> held_now{0};
  std::atomic<int> max_held{0};
  std::atomic<int> over_limit{0};
  std::atomic<int> held_twice{0};
  std::atomic<long> refusals{0};  // limit_exceeded / acquire_timeout seen, sync and async
  std::atomic<long> served{0};
  std::atomic<long> aborted{0};
  std::atomic<int> unexpected{0};

  // Called while holding `lease`. `limit` is the most the pool may hand out.
  void use(Lease<Res>& lease, std::size_t limit) {
    const int now = ++held_now;
    int seen = max_held.load();
    while (now > seen && !max_held.compare_exchange_weak(seen, now)) {
    }
    if (static_cast<std::size_t>(now) > limit) ++over_limit;
    if (lease->closed->load()) ++handed_closed;
    if (lease->holders->fetch_add(1) != 0) ++held_twice;
    if ((lease->id & 7) == 0) std::this_thread::yield();  // (simulates a little work; not synchronisation)
    lease->holders->fetch_sub(1);
    --held_now;
    ++served;
  }

  Resource<Res>::Options options(std::size_t limit, bool flaky) {
    Resource<Res>::Options o;
    o.limit = limit;
    o.create = [this, flaky] {
      if (flaky && ++factory_calls % 211 == 0) {
        ++factory_failures;
        throw factory_error();
      }
      Res r;
      r.id = ++created;
      return r;
    };
    o.close = [this](Res& r) {
      if (r.holders->load() != 0) ++closed_while_held;
      r.closed->store(true);
      ++closed;
    };
    if (flaky) {
      o.validate = [](Res& r) { return r.id % 13 != 0; };  // some resources turn out broken
    }
    return o;
  }
};

std::minstd_rand& rng() {
  thread_local std::minstd_rand engine(std::random_device{}());
  return engine;
}
int roll(int n) { return static_cast<int>(rng()() % static_cast<unsigned>(n)); }

// One async acquire on `strand` (initiated and possibly cancelled there, as
// Asio wants slots and signals used from one place), waited for here.
void async_once(Resource<Res>& pool, asio::strand<asio::io_context::executor_type> strand, Ledger& ledger,
                std::size_t limit) {
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  const bool cancel = roll(2) == 0;
  const int mode = roll(3);  // 0 untimed, 1 short timeout, 2 zero timeout
  asio::post(strand, [&pool, strand, &ledger, limit, done, cancel, mode] {
    auto signal = std::make_shared<asio::cancellation_signal>();
    auto handler = asio::bind_cancellation_slot(
        signal->slot(),
        asio::bind_executor(strand, [&ledger, limit, done, signal](error_code ec, Lease<Res> lease) {
          if (!ec) {
            if (lease)
              ledger.use(lease, limit);
            else
              ++ledger.unexpected;
          } else if (ec == asio::error::operation_aborted) {
            ++ledger.aborted;
          } else if (ec == respool::errc::acquire_timeout || ec == respool::errc::limit_exceeded) {
            ++ledger.refusals;
          } else if (ec != respool::errc::resource_creation_failed) {
            ++ledger.unexpected;
          }
          lease.release();
          done->set_value();
        }));
    if (mode == 0)
      pool.async_acquire(std::move(handler));
    else if (mode == 1)
      pool.async_acquire(std::chrono::microseconds(50 + roll(500)), std::move(handler));
    else
      pool.async_acquire(0s, std::move(handler));
    if (cancel) asio::post(strand, [signal] { signal->emit(asio::cancellation_type::terminal); });
  });
  finished.wait();
}

// One random synchronous operation.
void sync_once(Resource<Res>& pool, Ledger& ledger, std::size_t limit) {
  const int r = roll(100);
  try {
    if (r < 40) {
      auto lease = pool.acquire();
      ledger.use(lease, limit);
    } else if (r < 55) {
      auto lease = pool.acquire(0s);
      ledger.use(lease, limit);
    } else if (r < 70) {
      auto lease = pool.acquire(std::chrono::microseconds(1 + roll(300)));
      ledger.use(lease, limit);
    } else if (r < 88) {
      if (auto lease = pool.try_acquire()) ledger.use(*lease, limit);
    } else if (r < 95) {
      auto lease = pool.acquire();
      ledger.use(lease, limit);
      lease.discard();
    } else {
      const PoolStats st = pool.stats();
      if (st.in_use > limit || st.idle > limit) ++ledger.unexpected;
    }
  } catch (const respool::limit_exceeded&) {
    ++ledger.refusals;
  } catch (const factory_error&) {
  }
}

}  // namespace

TEST_CASE("stress: sync and async acquirers on one small pool", "[stress]") {
  constexpr std::size_t limit = 4;
  Ledger ledger;
  Resource<Res> pool(ledger.options(limit, /*flaky=*/true));

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::vector<std::thread> io_threads;
  for (int i = 0; i < 2; ++i) io_threads.emplace_back([&] { io.run(); });

  std::promise<void> start;
  std::shared_future<void> gate = start.get_future().share();
  std::vector<std::future<void>> workers;
  for (int t = 0; t < thread_count; ++t) {
    workers.push_back(std::async(std::launch::async, [&, gate] {
      auto strand = asio::make_strand(io);
      gate.wait();
      for (int i = 0; i < ops_per_thread; ++i) {
        if (roll(200) == 0)
          async_once(pool, strand, ledger, limit);
        else
          sync_once(pool, ledger, limit);
      }
    }));
  }
  start.set_value();
  for (auto& w : workers) w.get();
  work.reset();
  for (auto& t : io_threads) t.join();

  CHECK(ledger.over_limit == 0);
  CHECK(ledger.max_held <= static_cast<int>(limit));
  CHECK(ledger.held_twice == 0);
  CHECK(ledger.closed_while_held == 0);
  CHECK(ledger.unexpected == 0);
  CHECK(ledger.served > 0);
  CHECK(ledger.refusals > 0);

  const PoolStats st = pool.stats();
  CHECK(st.in_use == 0);
  CHECK(st.waiting == 0);
  CHECK(st.idle <= limit);
  CHECK(st.created == static_cast<std::size_t>(ledger.created.load()));
  CHECK(st.closed == static_cast<std::size_t>(ledger.closed.load()));
  CHECK(st.created == st.closed + st.idle);  // every resource made is idle or closed
  CHECK(st.timeouts == static_cast<std::size_t>(ledger.refusals.load()));
  // Afterwards the pool still works at full capacity.
  std::vector<Lease<Res>> all;
  for (std::size_t i = 0; i < limit; ++i) {
    try {
      all.push_back(pool.acquire(0s));
    } catch (const factory_error&) {
      --i;
    }
  }
  CHECK_FALSE(pool.try_acquire());
}

TEST_CASE("stress: resize and force_close_all while threads acquire", "[stress]") {
  constexpr std::size_t max_limit = 6;
  Ledger ledger;
  Resource<Res> pool(ledger.options(3, /*flaky=*/false));
  std::atomic<bool> stop{false};
  std::atomic<int> refused_resizes{0};

  std::vector<std::future<void>> workers;
  for (int t = 0; t < 8; ++t) {
    workers.push_back(std::async(std::launch::async, [&] {
      for (int i = 0; i < ops_per_thread / 4; ++i) {
        try {
          auto lease = (i % 3 == 0) ? pool.acquire() : pool.acquire(std::chrono::microseconds(200));
          // Held resources may be force-closed under our feet: only the count is checked.
          ++ledger.served;
          const int now = ++ledger.held_now;
          if (static_cast<std::size_t>(now) > max_limit) ++ledger.over_limit;
          if (i % 17 == 0) std::this_thread::yield();  // (simulates a little work; not synchronisation)
          --ledger.held_now;
          if (i % 11 == 0) lease.discard();
        } catch (const respool::limit_exceeded&) {
          ++ledger.refusals;
        }
      }
    }));
  }
  auto controller = std::async(std::launch::async, [&] {
    std::size_t n = 0;
    while (!stop) {
      ++n;
      try {
        if (n % 7 == 0)
          pool.force_close_all();
        else
          pool.resize(1 + n % max_limit, n % 5 == 0);
      } catch (const respool::error& e) {
        if (e.code() == respool::errc::pool_in_use) ++refused_resizes;
      }
      std::this_thread::yield();
    }
    pool.resize(max_limit);  // end on a limit that lets every waiter through
  });
  for (auto& w : workers) w.get();
  stop = true;
  controller.get();

  CHECK(ledger.over_limit == 0);
  const PoolStats st = pool.stats();
  CHECK(st.in_use == 0);
  CHECK(st.waiting == 0);
  CHECK(st.idle <= max_limit);
  CHECK(st.created == static_cast<std::size_t>(ledger.created.load()));
  CHECK(st.closed == static_cast<std::size_t>(ledger.closed.load()));
  CHECK(st.created == st.closed + st.idle);
  CHECK(st.timeouts == static_cast<std::size_t>(ledger.refusals.load()));
}

TEST_CASE("stress: waiters woken by close() while others release", "[stress]") {
  for (int round = 0; round < (ops_per_thread >= 100000 ? 200 : 20); ++round) {
    Ledger ledger;
    Resource<Res> pool(ledger.options(2, /*flaky=*/false));
    std::atomic<int> closed_errors{0};
    std::vector<std::future<void>> workers;
    for (int t = 0; t < 6; ++t) {
      workers.push_back(std::async(std::launch::async, [&] {
        try {
          for (;;) {
            auto lease = pool.acquire();
            ledger.use(lease, 2);
          }
        } catch (const respool::pool_closed&) {
          ++closed_errors;
        }
      }));
    }
    // Let them get going (they spin through the pool until it closes).
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (ledger.served < 100 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    pool.close();
    for (auto& w : workers) {
      REQUIRE(w.wait_for(60s) == std::future_status::ready);
      w.get();
    }
    REQUIRE(closed_errors == 6);
    REQUIRE(ledger.over_limit == 0);
    REQUIRE(ledger.held_twice == 0);
    const PoolStats st = pool.stats();
    REQUIRE(st.in_use == 0);
    REQUIRE(st.idle == 0);
    REQUIRE(st.waiting == 0);
    REQUIRE(st.created == st.closed);
  }
}

// The spare (pool_core.hpp): releases park a resource without the lock while
// nobody waits and nothing needs the lock's bookkeeping. Here a controller
// keeps closing and reopening it — resizes, policies switched on and off,
// maintenance passes that expire idle resources, group-free stats — while
// workers acquire (untimed, timed, zero, try), release and discard. Only
// idle resources are ever closed by these, so a lease must never get a
// closed resource, never one another lease holds, and the limit in force
// (at most max_limit) must hold.
TEST_CASE("stress: the lock-free spare while resizes, policies and expiry close and reopen it", "[stress]") {
  constexpr std::size_t max_limit = 4;
  Ledger ledger;
  auto pool = std::make_unique<Resource<Res>>(ledger.options(max_limit, /*flaky=*/false));
  std::atomic<bool> stop{false};

  std::vector<std::future<void>> workers;
  for (int t = 0; t < 6; ++t) {
    workers.push_back(std::async(std::launch::async, [&] {
      for (int i = 0; i < ops_per_thread / 2; ++i) {
        try {
          const int r = roll(10);
          if (r < 4) {
            auto lease = pool->acquire();
            ledger.use(lease, max_limit);
          } else if (r < 6) {
            auto lease = pool->acquire(std::chrono::microseconds(1 + roll(200)));
            ledger.use(lease, max_limit);
          } else if (r < 8) {
            if (auto lease = pool->try_acquire()) ledger.use(*lease, max_limit);
          } else if (r < 9) {
            auto lease = pool->acquire(0s);
            ledger.use(lease, max_limit);
          } else {
            auto lease = pool->acquire();
            ledger.use(lease, max_limit);
            lease.discard();
          }
        } catch (const respool::limit_exceeded&) {
        }
      }
    }));
  }
  auto controller = std::async(std::launch::async, [&] {
    std::size_t n = 0;
    while (!stop) {
      ++n;
      switch (n % 5) {
        case 0:
          try {
            pool->resize(1 + n % max_limit);  // shrinking with leases out is refused: fine
          } catch (const respool::error&) {
          }
          break;
        case 1: {
          respool::PoolPolicy p;
          p.idle_timeout = std::chrono::microseconds(1);  // every idle resource expires at once
          pool->set_policy(p);
          break;
        }
        case 2:
          pool->maintain();  // closes the expired idle ones
          break;
        case 3:
          pool->set_policy({});  // the next release reopens the spare
          break;
        default: {
          const PoolStats st = pool->stats();
          if (st.idle > max_limit) ++ledger.over_limit;
          break;
        }
      }
      std::this_thread::yield();
    }
    pool->resize(max_limit);
  });
  for (auto& w : workers) w.get();
  stop = true;
  controller.get();

  CHECK(ledger.handed_closed == 0);
  CHECK(ledger.held_twice == 0);
  CHECK(ledger.over_limit == 0);
  CHECK(ledger.closed_while_held == 0);
  const PoolStats st = pool->stats();
  CHECK(st.in_use == 0);
  CHECK(st.waiting == 0);
  CHECK(st.created == static_cast<std::size_t>(ledger.created.load()));
  CHECK(st.created == st.closed + st.idle);
  pool.reset();
  CHECK(ledger.closed == ledger.created);
  CHECK(ledger.served > 0);
}
