// respool-test: concurrency
// Unit tests of respool/resource.hpp: Resource<T>, the generic pool.
//
// The "kombu:" cases port the behaviour of kombu's t/unit/test_connection.py
// ResourceCase (run there for ConnectionPool and ChannelPool); where
// DESIGN.md deliberately differs (limit 0 keeps released resources idle,
// preload is explicit), the cases test DESIGN.md. Multi-threaded cases never
// use sleeps to synchronise: they wait on futures or spin on observable pool
// state (stats().waiting), so they also run under ThreadSanitizer.

#include "respool/resource.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

using namespace std::chrono_literals;
using respool::Lease;
using respool::PoolStats;
using respool::Resource;
using Clock = std::chrono::steady_clock;

// Counts what a pool's hooks saw. Resources are ints numbered 1, 2, 3... in
// creation order; `closed_values` lists the ones the close hook got.
struct Tracker {
  std::atomic<int> created{0};
  std::atomic<int> closed{0};
  std::mutex mutex;
  std::vector<int> closed_values;

  Resource<int>::Options options(std::size_t limit, std::size_t preload = 0) {
    Resource<int>::Options o;
    o.limit = limit;
    o.preload = preload;
    o.create = [this] { return ++created; };
    o.close = [this](int& v) {
      std::lock_guard<std::mutex> lock(mutex);
      closed_values.push_back(v);
      ++closed;
    };
    return o;
  }
  std::vector<int> closed_list() {
    std::lock_guard<std::mutex> lock(mutex);
    return closed_values;
  }
};

// Spins (yielding) until `condition()` holds. The limit only turns a hang
// into a failure; it is never what synchronises the test.
template <class Condition>
bool eventually(Condition condition) {
  const auto give_up = Clock::now() + 60s;
  while (!condition()) {
    if (Clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

// Waits for a future, failing (not hanging) if it never becomes ready.
template <class T>
T get(std::future<T>& f) {
  REQUIRE(f.wait_for(60s) == std::future_status::ready);
  return f.get();
}

bool waiting_is(const Resource<int>& pool, std::size_t n) {
  return eventually([&] { return pool.stats().waiting == n; });
}

// Checks the invariant every quiescent pool keeps.
void check_consistent(const Resource<int>& pool, const Tracker& t) {
  const PoolStats st = pool.stats();
  CHECK(st.waiting == 0);
  CHECK(st.created == static_cast<std::size_t>(t.created.load()));
  CHECK(st.closed == static_cast<std::size_t>(t.closed.load()));
  CHECK(st.created == st.closed + st.idle + st.in_use);
  if (st.limit != 0) CHECK(st.idle + st.in_use <= st.limit);
}

struct factory_error : std::runtime_error {
  factory_error() : std::runtime_error("factory failed") {}
};
struct io_error : std::runtime_error {  // kombu's test raises IOError
  io_error() : std::runtime_error("IOError") {}
};

}  // namespace

// ----- construction ----------------------------------------------------------

TEST_CASE("Resource: needs a factory (kombu test_setup)", "[resource]") {
  Resource<int>::Options o;
  o.limit = 3;
  REQUIRE_THROWS_AS(Resource<int>(o), std::invalid_argument);
  REQUIRE_THROWS_AS(Resource<int>(3, nullptr), std::invalid_argument);
}

TEST_CASE("Resource: (limit, create) constructor", "[resource]") {
  int made = 0;
  Resource<int> pool(7, [&] { return ++made; });
  CHECK(pool.limit() == 7);
  const PoolStats st = pool.stats();
  CHECK(st.limit == 7);
  CHECK(st.in_use == 0);
  CHECK(st.idle == 0);
  CHECK(st.waiting == 0);
  CHECK(st.created == 0);
  CHECK(st.closed == 0);
  CHECK(st.timeouts == 0);
  CHECK(made == 0);  // nothing created before it is needed
  CHECK(*pool.acquire() == 1);
}

TEST_CASE("Resource: Options is an aggregate with its fields in order", "[resource]") {
  STATIC_REQUIRE(std::is_aggregate_v<Resource<int>::Options>);
  // DESIGN.md's five fields, in order (the hooks after them are optional
  // extras); leaving fields out draws no -Wmissing-field-initializers warning.
  Resource<int> pool(Resource<int>::Options{4, 2, [] { return 42; }, nullptr, nullptr});
  CHECK(pool.limit() == 4);
  CHECK(pool.stats().idle == 2);
#if __cplusplus >= 202002L
  Resource<int> designated({.limit = 2, .preload = 1, .create = [] { return 5; }});
  CHECK(designated.limit() == 2);
  CHECK(designated.stats().idle == 1);
#endif
}

TEST_CASE("Resource: preload creates eagerly, capped at the limit", "[resource]") {
  Tracker t;
  SECTION("preload == limit (kombu test_setup)") {
    Resource<int> pool(t.options(10, 10));
    CHECK(t.created == 10);
    CHECK(pool.stats().idle == 10);
    CHECK(pool.stats().in_use == 0);
    CHECK(pool.stats().created == 10);
  }
  SECTION("preload above the limit is capped") {
    Resource<int> pool(t.options(5, 20));
    CHECK(t.created == 5);
    CHECK(pool.stats().idle == 5);
  }
  SECTION("unlimited pool preloads what was asked") {
    Resource<int> pool(t.options(0, 3));
    CHECK(t.created == 3);
    CHECK(pool.stats().idle == 3);
  }
  SECTION("no limit, no preload: empty (kombu test_setup_no_limit)") {
    Resource<int> pool(t.options(0));
    CHECK(pool.limit() == 0);
    CHECK(pool.stats().idle == 0);
    CHECK(t.created == 0);
  }
}

TEST_CASE("Resource: a preload factory that throws fails the constructor and leaks nothing", "[resource]") {
  Tracker t;
  auto o = t.options(5, 5);
  o.create = [&] {
    if (t.created == 2) throw factory_error();
    return ++t.created;
  };
  REQUIRE_THROWS_AS(Resource<int>(o), factory_error);
  CHECK(t.created == 2);
  CHECK(t.closed == 2);  // the ones already made are closed, not leaked
}

// ----- acquire / release -------------------------------------------------------

TEST_CASE("Resource: kombu test_acquire__release", "[resource][kombu]") {
  Tracker t;
  Resource<int> pool(t.options(10, 10));
  std::vector<Lease<int>> leases;
  for (int i = 0; i < 10; ++i) leases.push_back(pool.acquire());
  CHECK(pool.stats().idle == 0);
  CHECK(pool.stats().in_use == 10);
  REQUIRE_THROWS_AS(pool.acquire(0s), respool::limit_exceeded);
  leases.pop_back();
  CHECK(pool.stats().idle == 1);
  CHECK(pool.stats().in_use == 9);
  leases.clear();
  CHECK(pool.stats().idle == 10);
  CHECK(pool.stats().in_use == 0);
  CHECK(t.created == 10);
  check_consistent(pool, t);
}

TEST_CASE("Resource: created lazily, only when none is idle and under the limit", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(3));
  {
    auto a = pool.acquire();
    CHECK(*a == 1);
    CHECK(t.created == 1);
  }
  {
    auto a = pool.acquire();  // the idle one, not a new one
    CHECK(*a == 1);
    CHECK(t.created == 1);
    auto b = pool.acquire();  // none idle: create
    CHECK(*b == 2);
    auto c = pool.acquire();
    CHECK(*c == 3);
    CHECK(t.created == 3);
    CHECK_FALSE(pool.try_acquire());  // at the limit: no fourth
    CHECK(t.created == 3);
  }
  CHECK(pool.stats().idle == 3);
  check_consistent(pool, t);
}

TEST_CASE("Resource: idle resources are reused LIFO (warmest first)", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(0));
  {
    auto a = pool.acquire();
    auto b = pool.acquire();
    auto c = pool.acquire();
    REQUIRE((*a == 1 && *b == 2 && *c == 3));
    a.release();
    b.release();
    c.release();  // released last: warmest
  }
  auto x = pool.acquire();
  auto y = pool.acquire();
  auto z = pool.acquire();
  CHECK(*x == 3);
  CHECK(*y == 2);
  CHECK(*z == 1);
  CHECK(t.created == 3);
}

TEST_CASE("Resource: limit 0 is unlimited and still pools (kombu test_acquire_no_limit)",
          "[resource][kombu]") {
  Tracker t;
  Resource<int> pool(t.options(0));
  pool.acquire().release();
  {
    std::vector<Lease<int>> leases;
    for (int i = 0; i < 500; ++i) leases.push_back(pool.acquire(0s));  // never waits, never refuses
    auto more = pool.try_acquire();
    REQUIRE(more);
    leases.push_back(std::move(*more));
    CHECK(pool.stats().in_use == 501);
  }
  // DESIGN.md: unlike kombu, released resources stay idle and are reused.
  CHECK(pool.stats().idle == 501);
  CHECK(t.closed == 0);
  pool.acquire().release();
  CHECK(t.created == 501);
  check_consistent(pool, t);
}

TEST_CASE("Resource: discard closes and frees the slot (kombu test_replace_*)", "[resource][kombu]") {
  Tracker t;
  SECTION("with a limit") {
    Resource<int> pool(t.options(1));
    auto a = pool.acquire();
    a.discard();
    CHECK(t.closed_list() == std::vector<int>{1});
    CHECK(pool.stats().in_use == 0);
    CHECK(pool.stats().idle == 0);
    auto b = pool.acquire(0s);  // the slot is free again
    CHECK(*b == 2);
    b.release();
    check_consistent(pool, t);
  }
  SECTION("without a limit") {
    Resource<int> pool(t.options(0));
    auto a = pool.acquire();
    a.discard();
    CHECK(t.closed_list() == std::vector<int>{1});
    CHECK(pool.stats().in_use == 0);
    check_consistent(pool, t);
  }
}

// ----- waiting, timeouts ------------------------------------------------------

TEST_CASE("Resource: acquire(timeout) throws acquire_timeout after waiting at least the timeout",
          "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  auto held = pool.acquire();
  const auto timeout = 30ms;
  const auto start = Clock::now();
  try {
    pool.acquire(timeout);
    FAIL("acquire(timeout) succeeded on a full pool");
  } catch (const respool::acquire_timeout& e) {
    CHECK(Clock::now() - start >= timeout);
    CHECK(e.code() == respool::errc::acquire_timeout);
    CHECK(e.limit() == 1);
    CHECK(e.waited() >= timeout);
  }
  const PoolStats st = pool.stats();
  CHECK(st.timeouts == 1);
  CHECK(st.waiting == 0);
  CHECK(st.in_use == 1);
  // The expired waiter is gone from the queue: a release goes idle.
  held.release();
  CHECK(pool.stats().idle == 1);
  CHECK(*pool.acquire(0s) == 1);
}

TEST_CASE("Resource: acquire(timeout) accepts any duration type", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  auto held = pool.acquire();
  CHECK_THROWS_AS(pool.acquire(std::chrono::duration<double, std::milli>(1.5)), respool::acquire_timeout);
  CHECK_THROWS_AS(pool.acquire(std::chrono::microseconds(500)), respool::acquire_timeout);
  held.release();
  // Huge timeouts do not overflow the clock (and do not wait when not needed).
  CHECK(*pool.acquire(std::chrono::hours::max()) == 1);
  CHECK(*pool.acquire(std::chrono::duration<double>(1e30)) == 1);
  CHECK(*pool.acquire(std::chrono::nanoseconds::max()) == 1);
  CHECK(pool.stats().timeouts == 2);
}

TEST_CASE("Resource: acquire(0s) throws limit_exceeded without waiting (kombu block=False)", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(2));
  auto a = pool.acquire();
  auto b = pool.acquire();
  auto check_refusal = [&](auto timeout) {
    try {
      pool.acquire(timeout);
      FAIL("acquire(0) succeeded on a full pool");
    } catch (const respool::limit_exceeded& e) {
      CHECK(dynamic_cast<const respool::acquire_timeout*>(&e) == nullptr);
      CHECK(e.code() == respool::errc::limit_exceeded);
      CHECK(e.code() != respool::errc::acquire_timeout);
      CHECK(e.limit() == 2);
      CHECK(e.waited() == std::chrono::nanoseconds(0));
    }
  };
  check_refusal(0s);
  check_refusal(std::chrono::nanoseconds(0));
  check_refusal(-5ms);  // negative: same as zero
  const PoolStats st = pool.stats();
  CHECK(st.timeouts == 3);  // zero-wait refusals count as timeouts
  CHECK(st.waiting == 0);
  CHECK(st.in_use == 2);
}

TEST_CASE("Resource: try_acquire never waits", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  auto first = pool.try_acquire();
  REQUIRE(first);
  CHECK(**first == 1);
  CHECK_FALSE(pool.try_acquire().has_value());
  CHECK(pool.stats().waiting == 0);
  first->release();
  auto again = pool.try_acquire();
  REQUIRE(again);
  CHECK(**again == 1);
}

TEST_CASE("Resource: a waiter with a timeout is served when a resource comes back", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  auto held = pool.acquire();
  auto waiter = std::async(std::launch::async, [&] { return *pool.acquire(1h); });
  REQUIRE(waiting_is(pool, 1));
  held.release();
  CHECK(get(waiter) == 1);
  CHECK(pool.stats().timeouts == 0);
  check_consistent(pool, t);
}

// ----- hooks ------------------------------------------------------------------

TEST_CASE("Resource: the factory never runs under the pool lock", "[resource]") {
  Tracker t;
  Resource<int>* self = nullptr;
  std::atomic<int> calls{0};
  std::size_t in_use_seen = 0;
  int inner_value = 0;
  auto o = t.options(3);
  o.create = [&] {
    const int n = ++calls;
    // stats() takes the pool lock: this would deadlock if the factory ran under it.
    if (n == 1) {
      in_use_seen = self->stats().in_use;
      // So would acquiring another resource from the same pool.
      auto inner = self->acquire(0s);
      inner_value = *inner;
    }
    return n * 100;
  };
  Resource<int> pool(o);
  self = &pool;
  auto lease = pool.acquire();
  CHECK(*lease == 100);
  CHECK(in_use_seen == 1);  // the slot being created counts as in use
  CHECK(inner_value == 200);
  const PoolStats st = pool.stats();
  CHECK(st.created == 2);
  CHECK(st.in_use == 1);
  CHECK(st.idle == 1);
}

TEST_CASE("Resource: a throwing factory frees its slot and its exception reaches the caller", "[resource]") {
  Tracker t;
  bool fail = true;
  auto o = t.options(1);
  o.create = [&] {
    if (fail) throw factory_error();
    return ++t.created;
  };
  Resource<int> pool(o);
  REQUIRE_THROWS_AS(pool.acquire(), factory_error);
  PoolStats st = pool.stats();
  CHECK(st.in_use == 0);
  CHECK(st.idle == 0);
  CHECK(st.created == 0);
  CHECK(st.waiting == 0);
  REQUIRE_THROWS_AS(pool.acquire(0s), factory_error);  // still a slot to try again with
  REQUIRE_THROWS_AS(pool.try_acquire(), factory_error);
  fail = false;
  auto lease = pool.acquire(0s);  // the slot is free: no wait needed
  CHECK(*lease == 1);
  check_consistent(pool, t);
}

TEST_CASE("Resource: a throwing factory in a woken waiter frees the slot for the next", "[resource]") {
  Tracker t;
  std::atomic<bool> fail{false};
  auto o = t.options(1);
  o.create = [&] {
    if (fail) throw factory_error();
    return ++t.created;
  };
  Resource<int> pool(o);
  auto held = pool.acquire();
  auto waiter = std::async(std::launch::async, [&] { return *pool.acquire(); });
  REQUIRE(waiting_is(pool, 1));
  fail = true;
  held.discard();  // frees the slot: the waiter gets to create, and its factory throws
  REQUIRE(waiter.wait_for(60s) == std::future_status::ready);
  CHECK_THROWS_AS(waiter.get(), factory_error);
  fail = false;
  CHECK(*pool.acquire(0s) == 2);
  check_consistent(pool, t);
}

TEST_CASE("Resource: validate false or throwing closes and replaces transparently", "[resource]") {
  Tracker t;
  std::atomic<int> verdict{1};  // 1 = fine, 0 = broken, -1 = throw
  std::atomic<int> validated{0};
  auto o = t.options(1);
  o.validate = [&](int&) {
    ++validated;
    if (verdict < 0) throw std::runtime_error("validate failed");
    return verdict == 1;
  };
  Resource<int> pool(o);
  CHECK(*pool.acquire() == 1);
  CHECK(validated == 0);  // a fresh resource is not validated
  CHECK(*pool.acquire() == 1);
  CHECK(validated == 1);

  verdict = 0;
  CHECK(*pool.acquire() == 2);  // 1 was broken: closed and replaced
  CHECK(t.closed_list() == std::vector<int>{1});

  verdict = -1;
  CHECK(*pool.acquire(0s) == 3);  // a throwing validate counts as broken
  CHECK(t.closed_list() == std::vector<int>{1, 2});

  verdict = 1;
  CHECK(*pool.acquire() == 3);
  const PoolStats st = pool.stats();
  CHECK(st.created == 3);
  CHECK(st.closed == 2);
  CHECK(st.idle == 1);
  CHECK(st.in_use == 0);
  check_consistent(pool, t);
}

TEST_CASE("Resource: prepare throwing propagates and frees the slot (kombu test_acquire_prepare_raises)",
          "[resource][kombu]") {
  Tracker t;
  std::atomic<bool> fail{true};
  std::atomic<int> prepared{0};
  auto o = t.options(10, 10);
  o.prepare = [&](int&) {
    ++prepared;
    if (fail) throw io_error();
  };
  Resource<int> pool(o);
  REQUIRE(pool.stats().idle == 10);
  REQUIRE_THROWS_AS(pool.acquire(), io_error);
  CHECK(pool.stats().idle == 10);
  CHECK(pool.stats().in_use == 0);
  fail = false;
  auto lease = pool.acquire();
  CHECK(prepared == 2);  // prepare runs on every hand-out
  check_consistent(pool, t);
}

TEST_CASE("Resource: prepare throwing on a fresh resource keeps it and frees the slot", "[resource]") {
  Tracker t;
  bool fail = true;
  auto o = t.options(1);
  o.prepare = [&](int&) {
    if (fail) throw std::runtime_error("prepare failed");
  };
  Resource<int> pool(o);
  REQUIRE_THROWS_WITH(pool.acquire(), "prepare failed");
  CHECK(pool.stats().in_use == 0);
  fail = false;
  CHECK(*pool.acquire(0s) == 1);  // the slot (and the resource) came back
  check_consistent(pool, t);
}

TEST_CASE("Resource: on_release runs when a lease gives back, and throwing discards", "[resource]") {
  Tracker t;
  std::atomic<int> released{0};
  std::atomic<bool> fail{false};
  auto o = t.options(2);
  o.on_release = [&](int&) {
    ++released;
    if (fail) throw std::runtime_error("on_release failed");
  };
  Resource<int> pool(o);
  pool.acquire().release();
  CHECK(released == 1);
  CHECK(pool.stats().idle == 1);
  fail = true;
  pool.acquire().release();
  CHECK(released == 2);
  CHECK(t.closed == 1);
  CHECK(pool.stats().idle == 0);
  CHECK(pool.stats().in_use == 0);
  check_consistent(pool, t);
}

TEST_CASE("Resource: a throwing close hook does not break the pool", "[resource]") {
  Tracker t;
  auto o = t.options(1);
  o.close = [&](int&) {
    ++t.closed;
    throw std::runtime_error("close failed");
  };
  Resource<int> pool(o);
  pool.acquire().discard();
  CHECK(t.closed == 1);
  CHECK(*pool.acquire(0s) == 2);
  pool.force_close_all();
  CHECK(t.closed == 2);
  check_consistent(pool, t);
}

// ----- FIFO, wakeups -----------------------------------------------------------

TEST_CASE("Resource: waiters are served strictly first come, first served", "[resource][fifo]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  auto held = pool.acquire();
  constexpr int n = 6;
  std::mutex mutex;
  std::vector<int> order;
  std::vector<std::future<void>> waiters;
  for (int i = 0; i < n; ++i) {
    waiters.push_back(std::async(std::launch::async, [&, i] {
      // Alternate untimed and timed waits: one queue for both.
      auto lease = (i % 2 == 0) ? pool.acquire() : pool.acquire(1h);
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(i);
    }));  // the lease goes back (to the next waiter) when the thread ends
    REQUIRE(waiting_is(pool, static_cast<std::size_t>(i + 1)));
  }
  held.release();
  for (auto& w : waiters) get(w);
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
  check_consistent(pool, t);
  CHECK(t.created == 1);
}

TEST_CASE("Resource: a released resource goes to the longest waiter, not to a newcomer", "[resource][fifo]") {
  Tracker t;
  auto options = t.options(1);
  options.starvation_threshold = std::chrono::nanoseconds(0);  // strict hand-off (barging: fairness_test)
  Resource<int> pool(options);
  auto held = pool.acquire();
  std::promise<void> may_finish;
  auto waiter = std::async(std::launch::async, [&] {
    auto lease = pool.acquire();
    may_finish.get_future().wait();
    return *lease;
  });
  REQUIRE(waiting_is(pool, 1));
  held.release();
  // The waiter owns it now, whether or not its thread has woken up yet.
  CHECK_FALSE(pool.try_acquire());
  CHECK_THROWS_AS(pool.acquire(0s), respool::limit_exceeded);
  CHECK(pool.stats().in_use == 1);
  CHECK(pool.stats().waiting == 0);
  may_finish.set_value();
  CHECK(get(waiter) == 1);
}

TEST_CASE("Resource: newcomers queue behind waiters even when a slot frees up", "[resource][fifo]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  auto held = pool.acquire();
  std::promise<void> may_finish;
  auto first = std::async(std::launch::async, [&] {
    auto lease = pool.acquire();
    may_finish.get_future().wait();
    return *lease;
  });
  REQUIRE(waiting_is(pool, 1));
  held.discard();  // frees capacity (not a resource): granted to the waiter
  CHECK_FALSE(pool.try_acquire());
  may_finish.set_value();
  CHECK(get(first) == 2);
  check_consistent(pool, t);
}

TEST_CASE("Resource: a release with waiters queued always wakes one (no lost wakeup)", "[resource][fifo]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  for (int round = 0; round < 200; ++round) {
    auto held = pool.acquire();
    auto waiter = std::async(std::launch::async, [&] { return *pool.acquire(); });
    REQUIRE(waiting_is(pool, 1));
    held.release();
    REQUIRE(get(waiter) == 1);
  }
  // Two waiters, two releases from two threads at once.
  for (int round = 0; round < 100; ++round) {
    Resource<int> two(t.options(2));
    auto a = two.acquire();
    auto b = two.acquire();
    auto w1 = std::async(std::launch::async, [&] { two.acquire(); });
    auto w2 = std::async(std::launch::async, [&] { two.acquire(); });
    REQUIRE(waiting_is(two, 2));
    auto r1 = std::async(std::launch::async, [&] { a.release(); });
    b.release();
    get(r1);
    get(w1);
    get(w2);
    REQUIRE(two.stats().idle == 2);
  }
}

// ----- resize -------------------------------------------------------------------

TEST_CASE("Resource: growing wakes waiters (kombu test_acquire_resize_larger)", "[resource][resize]") {
  Tracker t;
  Resource<int> pool(t.options(1, 1));
  auto c1 = pool.acquire();
  REQUIRE_THROWS_AS(pool.acquire(0s), respool::limit_exceeded);
  SECTION("no waiters") {
    pool.resize(2);
    CHECK(pool.limit() == 2);
    auto c2 = pool.acquire(0s);
    CHECK(pool.stats().in_use == 2);
  }
  SECTION("queued waiters are woken") {
    auto w1 = std::async(std::launch::async, [&] { return *pool.acquire(); });
    REQUIRE(waiting_is(pool, 1));
    auto w2 = std::async(std::launch::async, [&] { return *pool.acquire(); });
    REQUIRE(waiting_is(pool, 2));
    pool.resize(3);
    CHECK(get(w1) + get(w2) == 2 + 3);  // both created a new one
  }
  SECTION("to unlimited") {
    auto w1 = std::async(std::launch::async, [&] { return *pool.acquire(); });
    REQUIRE(waiting_is(pool, 1));
    pool.resize(0);
    CHECK(get(w1) == 2);
    CHECK(pool.limit() == 0);
  }
  c1.release();
  check_consistent(pool, t);
}

TEST_CASE("Resource: shrinking at or above the number in use closes idle ones at once",
          "[resource][resize]") {
  Tracker t;
  SECTION("kombu test_acquire_resize_ignore_err_shrink") {
    Resource<int> pool(t.options(5, 5));
    std::vector<Lease<int>> leases;
    for (int i = 0; i < 4; ++i) leases.push_back(pool.acquire());
    CHECK(pool.stats().idle == 1);
    pool.resize(4);
    CHECK(pool.limit() == 4);
    CHECK(pool.stats().idle == 0);
    CHECK(t.closed == 1);
    leases.clear();
    CHECK(pool.stats().idle == 4);
    check_consistent(pool, t);
  }
  SECTION("down to exactly the number in use") {
    Resource<int> pool(t.options(5, 5));
    auto a = pool.acquire();
    auto b = pool.acquire();
    pool.resize(2);
    CHECK(t.closed == 3);
    CHECK(pool.stats().idle == 0);
    CHECK_THROWS_AS(pool.acquire(0s), respool::limit_exceeded);
    a.release();
    b.release();
    CHECK(pool.stats().idle == 2);
    check_consistent(pool, t);
  }
  SECTION("nothing in use") {
    Resource<int> pool(t.options(6, 6));
    pool.resize(2, true);  // force changes nothing when not below the number in use
    CHECK(t.closed == 4);
    CHECK(pool.stats().idle == 2);
    check_consistent(pool, t);
  }
}

TEST_CASE("Resource: shrinking below the number in use throws pool_in_use (kombu test_acquire_resize_in_use)",
          "[resource][resize]") {
  Tracker t;
  Resource<int> pool(t.options(5, 5));
  std::vector<Lease<int>> leases;
  for (int i = 0; i < 5; ++i) leases.push_back(pool.acquire());
  try {
    pool.resize(4);
    FAIL("resize below the number in use did not throw");
  } catch (const respool::error& e) {
    CHECK(e.code() == respool::errc::pool_in_use);
    CHECK(dynamic_cast<const respool::limit_exceeded*>(&e) == nullptr);
  }
  CHECK(pool.limit() == 5);
  CHECK(t.closed == 0);
  leases.clear();
  CHECK(pool.stats().idle == 5);
  check_consistent(pool, t);
}

TEST_CASE(
    "Resource: forced shrink below the number in use closes everything (kombu "
    "test_acquire_resize_force_smaller)",
    "[resource][resize]") {
  Tracker t;
  Resource<int> pool(t.options(2, 2));
  auto c1 = pool.acquire();
  auto c2 = pool.acquire();
  REQUIRE_THROWS_AS(pool.acquire(0s), respool::limit_exceeded);
  pool.resize(1, true);
  CHECK(pool.limit() == 1);
  CHECK(t.closed == 2);  // dragged from under the holders' feet
  c1.release();
  c2.discard();
  CHECK(t.closed == 2);  // not closed twice
  CHECK(pool.stats().in_use == 0);
  auto c3 = pool.acquire(0s);
  CHECK(*c3 == 3);
  REQUIRE_THROWS_AS(pool.acquire(0s), respool::limit_exceeded);
  c3.release();
  CHECK(pool.stats().idle == 1);
  check_consistent(pool, t);
}

// ----- force_close_all, close --------------------------------------------------

TEST_CASE("Resource: force_close_all closes idle and leased resources", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(4, 4));
  auto a = pool.acquire();
  auto b = pool.acquire();
  pool.force_close_all();
  CHECK(t.closed == 4);
  PoolStats st = pool.stats();
  CHECK(st.closed == 4);
  CHECK(st.idle == 0);
  CHECK(st.in_use == 2);  // the held leases still count until they let go
  CHECK(static_cast<bool>(a));
  CHECK(*a == 4);  // still readable: the holder owns a closed resource
  a.release();     // a dead slot: freed, not reused, not closed again
  b.discard();
  CHECK(t.closed == 4);
  st = pool.stats();
  CHECK(st.in_use == 0);
  CHECK(st.idle == 0);
  // The pool stays open and creates afresh.
  CHECK(*pool.acquire(0s) == 5);
  pool.force_close_all();
  pool.force_close_all();  // idempotent
  CHECK(t.closed == 5);
  check_consistent(pool, t);
}

TEST_CASE("Resource: force_close_all while an acquirer validates closes that resource once", "[resource]") {
  Tracker t;
  std::promise<void> validating;
  std::promise<void> go_on;
  auto go_on_future = go_on.get_future().share();
  std::atomic<int> calls{0};
  std::atomic<bool> verdict{false};
  auto o = t.options(1, 1);
  o.validate = [&](int&) {
    if (++calls == 1) {
      validating.set_value();
      go_on_future.wait();
    }
    return verdict.load();
  };
  SECTION("validate then says broken") { verdict = false; }
  SECTION("validate then says fine") { verdict = true; }
  Resource<int> pool(o);
  auto acquirer = std::async(std::launch::async, [&] { return *pool.acquire(); });
  validating.get_future().wait();
  pool.force_close_all();  // the resource being validated is handed out: closed under the acquirer's feet
  CHECK(t.closed_list() == std::vector<int>{1});
  go_on.set_value();
  const int got = get(acquirer);
  CHECK(t.closed_list() == std::vector<int>{1});  // never closed twice
  CHECK(got == (verdict ? 1 : 2));
  const PoolStats st = pool.stats();
  CHECK(st.in_use == 0);
  CHECK(st.idle == (verdict ? 0u : 1u));
  check_consistent(pool, t);
}

TEST_CASE("Resource: close() wakes waiters with pool_closed and refuses further acquires", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(2, 2));
  auto a = pool.acquire();
  auto b = pool.acquire();
  auto w1 = std::async(std::launch::async, [&] { pool.acquire(); });
  REQUIRE(waiting_is(pool, 1));
  auto w2 = std::async(std::launch::async, [&] { pool.acquire(1h); });
  REQUIRE(waiting_is(pool, 2));
  pool.close();
  REQUIRE(w1.wait_for(60s) == std::future_status::ready);
  REQUIRE(w2.wait_for(60s) == std::future_status::ready);
  CHECK_THROWS_AS(w1.get(), respool::pool_closed);
  CHECK_THROWS_AS(w2.get(), respool::pool_closed);
  CHECK(pool.stats().waiting == 0);
  CHECK_THROWS_AS(pool.acquire(), respool::pool_closed);
  CHECK_THROWS_AS(pool.acquire(1s), respool::pool_closed);
  CHECK_THROWS_AS(pool.acquire(0s), respool::pool_closed);  // closed, not limit_exceeded
  CHECK_THROWS_AS(pool.try_acquire(), respool::pool_closed);
  try {
    pool.acquire();
  } catch (const respool::error& e) {
    CHECK(e.code() == respool::errc::pool_closed);
  }
  CHECK(t.closed == 0);
  CHECK(*a == 2);
  a.release();  // leased ones close when they come back
  b.discard();
  CHECK(t.closed == 2);
  const PoolStats st = pool.stats();
  CHECK(st.idle == 0);
  CHECK(st.in_use == 0);
  CHECK(st.timeouts == 0);
  pool.close();  // idempotent
  check_consistent(pool, t);
}

TEST_CASE("Resource: close() closes idle resources at once", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(3, 3));
  auto a = pool.acquire();
  pool.close();
  CHECK(t.closed == 2);
  CHECK(pool.stats().idle == 0);
  a.release();
  CHECK(t.closed == 3);
  check_consistent(pool, t);
}

// ----- stats --------------------------------------------------------------------

TEST_CASE("Resource: stats() reports every counter", "[resource]") {
  Tracker t;
  Resource<int> pool(t.options(3, 1));
  PoolStats st = pool.stats();
  CHECK(st.limit == 3);
  CHECK(st.created == 1);
  CHECK(st.idle == 1);
  auto a = pool.acquire();
  auto b = pool.acquire();
  auto c = pool.acquire();
  CHECK_THROWS(pool.acquire(0s));
  CHECK_THROWS(pool.acquire(1ms));
  auto w = std::async(std::launch::async, [&] { pool.acquire(); });
  REQUIRE(waiting_is(pool, 1));
  st = pool.stats();
  CHECK(st.limit == 3);
  CHECK(st.in_use == 3);
  CHECK(st.idle == 0);
  CHECK(st.waiting == 1);
  CHECK(st.created == 3);
  CHECK(st.closed == 0);
  CHECK(st.timeouts == 2);
  c.discard();
  get(w);
  a.release();
  st = pool.stats();
  CHECK(st.in_use == 1);
  CHECK(st.idle == 2);
  CHECK(st.waiting == 0);
  CHECK(st.created == 4);
  CHECK(st.closed == 1);
  b.release();
  check_consistent(pool, t);
}

// ----- lifetime --------------------------------------------------------------------

TEST_CASE("Resource: destroyed with leases out, each resource is closed exactly once", "[resource]") {
  Tracker t;
  auto pool = std::make_unique<Resource<int>>(t.options(4, 3));
  auto a = pool->acquire();
  auto b = pool->acquire();
  auto dead = pool->acquire();
  dead.release();
  auto c = pool->acquire();
  pool->force_close_all();  // c is now a dead slot
  CHECK(t.closed == 3);
  a = pool->acquire();  // a new one; the old `a` went back (a dead slot)
  pool.reset();
  CHECK(t.closed == 3);  // nothing idle left to close
  CHECK(*a == 4);
  a.release();  // closes it: the pool is gone
  CHECK(t.closed_list().back() == 4);
  b.discard();  // b was force-closed already
  c.release();
  CHECK(t.closed == 4);
  CHECK(t.created == 4);
}

TEST_CASE("Resource: destroying the pool closes idle ones and later the leased ones", "[resource]") {
  Tracker t;
  std::optional<Lease<int>> lease;
  {
    Resource<int> pool(t.options(3, 3));
    lease = pool.acquire();
  }
  CHECK(t.closed == 2);
  CHECK(**lease == 3);
  lease.reset();
  CHECK(t.closed == 3);
}
