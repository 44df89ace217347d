// respool-test: concurrency
// Unit tests of respool/pool_group.hpp: PoolGroup<Key, Pool>, one pool per
// key (kombu t/unit/test_pools.py, test_PoolGroup: the generic parts).
//
// The global default limit is driven through respool::detail (the public
// pools::set_limit lives in pools.hpp); every case that changes it restores
// kombu's guide default, 200.

#include "respool/pool_group.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "respool/detail/globals.hpp"
#include "respool/resource.hpp"

namespace {

using namespace std::chrono_literals;
using respool::Lease;
using respool::PoolGroup;
using respool::Resource;
using Clock = std::chrono::steady_clock;

using Pool = Resource<int>;
using Group = PoolGroup<std::string, Pool>;

constexpr std::size_t guide_default = 200;

// Builds pools for a group and counts what happens to them.
struct Factory {
  std::atomic<int> calls{0};
  std::atomic<int> created{0};
  std::atomic<int> closed{0};
  std::mutex mutex;
  std::vector<std::pair<std::string, std::size_t>> made;  // (key, limit) per call

  Group::factory_type get() {
    return [this](const std::string& key, std::size_t limit) {
      ++calls;
      {
        std::lock_guard<std::mutex> lock(mutex);
        made.emplace_back(key, limit);
      }
      Pool::Options o;
      o.limit = limit;
      o.create = [this] { return ++created; };
      o.close = [this](int&) { ++closed; };
      return std::make_unique<Pool>(std::move(o));
    };
  }
};

// Restores the global default limit when a case ends, however it ends.
struct DefaultLimitGuard {
  DefaultLimitGuard() { respool::detail::set_default_limit(guide_default, true); }
  ~DefaultLimitGuard() { respool::detail::set_default_limit(guide_default, true); }
};

template <class Condition>
bool eventually(Condition condition) {
  const auto give_up = Clock::now() + 60s;
  while (!condition()) {
    if (Clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_CASE("PoolGroup: group[key] creates the pool on first use (kombu test_getitem_using_custom_limit)",
          "[pool_group]") {
  Factory f;
  Group group(102456, f.get());
  CHECK(group.size() == 0);
  CHECK(f.calls == 0);
  Pool& pool = group["foo"];
  CHECK(f.calls == 1);
  CHECK(f.made.at(0) == std::make_pair(std::string("foo"), std::size_t{102456}));
  CHECK(pool.limit() == 102456);
  CHECK(group.size() == 1);
  CHECK(group.limit() == 102456);
}

TEST_CASE("PoolGroup: the same key gives the same pool object", "[pool_group]") {
  Factory f;
  Group group(3, f.get());
  Pool& a = group["a"];
  Pool& b = group["b"];
  CHECK(&a != &b);
  CHECK(&group["a"] == &a);
  CHECK(&group[std::string("b")] == &b);
  CHECK(f.calls == 2);
  CHECK(group.size() == 2);
  // The pools are independent: a lease of one shows in that one only.
  auto lease = group["a"].acquire();
  CHECK(a.stats().in_use == 1);
  CHECK(b.stats().in_use == 0);
  lease.release();
  CHECK(a.stats().idle == 1);
}

TEST_CASE("PoolGroup: threads racing on a new key get one pool, made once", "[pool_group]") {
  Factory f;
  Group group(5, f.get());
  constexpr int n = 8;
  for (int round = 0; round < 20; ++round) {
    const std::string key = "key-" + std::to_string(round);
    std::promise<void> start;
    std::shared_future<void> gate = start.get_future().share();
    std::atomic<int> ready{0};
    std::vector<std::future<Pool*>> racers;
    for (int i = 0; i < n; ++i) {
      racers.push_back(std::async(std::launch::async, [&, gate] {
        ++ready;
        gate.wait();
        return &group[key];
      }));
    }
    REQUIRE(eventually([&] { return ready == n; }));
    start.set_value();
    std::vector<Pool*> got;
    for (auto& r : racers) {
      REQUIRE(r.wait_for(60s) == std::future_status::ready);
      got.push_back(r.get());
    }
    for (Pool* p : got) CHECK(p == got.front());
    CHECK(f.calls == round + 1);  // the factory ran once for this key
  }
  CHECK(group.size() == 20);
}

TEST_CASE("PoolGroup: a throwing factory leaves nothing behind", "[pool_group]") {
  Factory f;
  bool fail = true;
  Group group(2, [&](const std::string& key, std::size_t limit) {
    if (fail) throw std::runtime_error("no pool for " + key);
    return f.get()(key, limit);
  });
  CHECK_THROWS_WITH(group["x"], "no pool for x");
  CHECK(group.size() == 0);
  fail = false;
  CHECK(group["x"].limit() == 2);
  CHECK(group.size() == 1);
}

TEST_CASE("PoolGroup: resize() applies to every pool and to pools made later", "[pool_group]") {
  Factory f;
  Group group(4, f.get());
  Pool& a = group["a"];
  Pool& b = group["b"];
  std::vector<Lease<int>> leases;
  for (int i = 0; i < 3; ++i) leases.push_back(a.acquire());
  leases.push_back(b.acquire());

  group.resize(10);
  CHECK(group.limit() == 10);
  CHECK(a.limit() == 10);
  CHECK(b.limit() == 10);
  CHECK(group["c"].limit() == 10);

  group.resize(3);  // at the number in use of the busiest pool: fine
  CHECK(a.limit() == 3);
  CHECK(b.limit() == 3);
  CHECK(group["c"].limit() == 3);
  CHECK(group.limit() == 3);

  group.resize(0);  // unlimited
  CHECK(a.limit() == 0);
  CHECK(group.limit() == 0);
}

TEST_CASE("PoolGroup: resize() below the number in use throws and leaves every pool unchanged",
          "[pool_group]") {
  Factory f;
  Group group(5, f.get());
  // Pools are visited in an unspecified order: whichever comes first, none may change.
  std::vector<Pool*> pools;
  for (const char* key : {"a", "b", "c", "d"}) pools.push_back(&group[key]);
  for (Pool* p : pools) p->acquire().release();  // one idle resource each
  std::vector<Lease<int>> leases;
  for (int i = 0; i < 4; ++i) leases.push_back(group["c"].acquire());

  try {
    group.resize(2);
    FAIL("resize below the number in use did not throw");
  } catch (const respool::error& e) {
    CHECK(e.code() == respool::errc::pool_in_use);
  }
  CHECK(group.limit() == 5);
  for (Pool* p : pools) CHECK(p->limit() == 5);
  CHECK(f.closed == 0);  // not even the idle resources of the other pools
  CHECK(group["e"].limit() == 5);

  group.resize(2, true);  // force: every pool shrunk; the one below its use force-closed
  for (Pool* p : pools) CHECK(p->limit() == 2);
  CHECK(group.limit() == 2);
  CHECK(f.closed == 4);  // c's four leased ones; the others keep their idle one
  leases.clear();
  CHECK(f.closed == 4);
  CHECK(group["c"].stats().in_use == 0);
}

TEST_CASE("PoolGroup: reset() force-closes every pool and forgets them", "[pool_group]") {
  Factory f;
  Group group(3, f.get());
  Pool* old_a = &group["a"];
  group["b"].acquire().release();
  auto lease = group["a"].acquire();  // held across the reset
  REQUIRE(*lease == 2);
  CHECK(group.size() == 2);

  group.reset();
  CHECK(group.size() == 0);
  CHECK(f.closed == 2);  // the idle one of b, and the leased one of a
  Pool& new_a = group["a"];
  CHECK(f.calls == 3);  // a new pool
  CHECK(new_a.stats().created == 0);
  (void)old_a;  // dangles now: never touched again

  // The lease outlived its pool: still readable, released safely, not closed twice.
  CHECK(*lease == 2);
  lease.release();
  CHECK(f.closed == 2);
  CHECK(group.size() == 1);
  group.reset();
  group.reset();  // idempotent
  CHECK(group.size() == 0);
}

TEST_CASE("PoolGroup: reset() closes the old pools: waiters and late users get pool_closed", "[pool_group]") {
  Factory f;
  Group group(1, f.get());
  Pool& old = group["a"];  // e.g. looked up by a thread just before another one resets
  auto lease = old.acquire();
  auto waiter = std::async(std::launch::async, [&] { old.acquire(); });
  REQUIRE(eventually([&] { return old.stats().waiting == 1; }));
  group.reset();
  REQUIRE(waiter.wait_for(60s) == std::future_status::ready);
  CHECK_THROWS_AS(waiter.get(), respool::pool_closed);
  lease.release();
  // The reference stays valid for the group's lifetime; the old pool refuses.
  CHECK_THROWS_AS(old.acquire(), respool::pool_closed);
  CHECK_THROWS_AS(old.try_acquire(), respool::pool_closed);
  CHECK(old.stats().in_use == 0);
  Pool& fresh = group["a"];
  CHECK(&fresh != &old);
  CHECK(*fresh.acquire(0s) == 2);
  CHECK(f.closed == 1);
}

TEST_CASE("PoolGroup: lookups racing with reset() never touch a destroyed pool", "[pool_group]") {
  Factory f;
  Group group(2, f.get());
  std::atomic<bool> stop{false};
  std::atomic<int> served{0};
  std::vector<std::future<void>> users;
  for (int t = 0; t < 3; ++t) {
    users.push_back(std::async(std::launch::async, [&] {
      while (!stop) {
        try {
          auto lease = group["k"].acquire(5ms);
          ++served;
        } catch (const respool::pool_closed&) {
        } catch (const respool::limit_exceeded&) {
        }
      }
    }));
  }
  for (int i = 0; i < 200; ++i) {
    REQUIRE(eventually([&] { return served > i; }));
    group.reset();
  }
  stop = true;
  for (auto& u : users) {
    REQUIRE(u.wait_for(60s) == std::future_status::ready);
    u.get();
  }
  group.reset();
  CHECK(f.created == f.closed);
}

TEST_CASE("PoolGroup: an explicit limit does not follow the default", "[pool_group]") {
  DefaultLimitGuard guard;
  Factory f;
  Group group(7, f.get());
  group["a"];
  respool::detail::set_default_limit(11, false);
  CHECK(group.limit() == 7);
  CHECK(group["a"].limit() == 7);
  CHECK_FALSE(group.follows_default_limit());
}

TEST_CASE("PoolGroup: use_default_limit follows the global default (kombu test_getitem_using_global_limit)",
          "[pool_group]") {
  DefaultLimitGuard guard;
  CHECK(respool::detail::default_limit() == guide_default);
  Factory f;
  Group group(respool::use_default_limit, f.get());
  CHECK(group.follows_default_limit());
  CHECK(group.limit() == guide_default);
  Pool& foo = group["foo"];
  CHECK(f.made.at(0) == std::make_pair(std::string("foo"), guide_default));
  CHECK(foo.limit() == guide_default);

  // Later changes reach the group and its existing pools.
  CHECK(respool::detail::set_default_limit(34576, false) == 34576);
  CHECK(respool::detail::default_limit() == 34576);
  CHECK(group.limit() == 34576);
  CHECK(foo.limit() == 34576);
  CHECK(group["bar"].limit() == 34576);

  // A group made now starts from the current default.
  Factory g;
  Group later(respool::use_default_limit, g.get());
  CHECK(later.limit() == 34576);
}

TEST_CASE("PoolGroup: set_default_limit below the number in use (kombu test_set_limit)", "[pool_group]") {
  DefaultLimitGuard guard;
  Factory f;
  Group group(respool::use_default_limit, f.get());
  Factory g;
  Group other(respool::use_default_limit, g.get());
  other["x"];
  respool::detail::set_default_limit(3, false);
  Pool& pool = group["conn"];
  {
    std::vector<Lease<int>> leases;
    for (int i = 0; i < 3; ++i) leases.push_back(pool.acquire());
    respool::detail::set_default_limit(4, false);  // growing always works
    CHECK(pool.limit() == 4);
    CHECK_THROWS_AS(respool::detail::set_default_limit(2, false), respool::error);
    // Refused: the default and every group stay as they were.
    CHECK(respool::detail::default_limit() == 4);
    CHECK(pool.limit() == 4);
    CHECK(group.limit() == 4);
    CHECK(other.limit() == 4);
    CHECK(other["x"].limit() == 4);
    CHECK(f.closed == 0);
    respool::detail::set_default_limit(2, true);  // force: shrinks, closing what was in use
    CHECK(respool::detail::default_limit() == 2);
    CHECK(pool.limit() == 2);
    CHECK(other["x"].limit() == 2);
    CHECK(f.closed == 3);
  }
  CHECK(f.closed == 3);
  CHECK(pool.stats().in_use == 0);
}

TEST_CASE("PoolGroup: removing the limit while a resource is in use (kombu test_remove_limit)",
          "[pool_group]") {
  Factory f;
  Group group(10, f.get());
  Pool& pool = group["memory://"];
  auto lease = pool.acquire();
  group.resize(0);
  CHECK(pool.limit() == 0);
  CHECK(pool.stats().in_use == 1);
}

TEST_CASE("PoolGroup: a failed explicit resize does not change what the group follows", "[pool_group]") {
  DefaultLimitGuard guard;
  Factory f;
  Group group(respool::use_default_limit, f.get());
  auto a = group["a"].acquire();
  auto b = group["a"].acquire();
  CHECK_THROWS_AS(group.resize(1), respool::error);
  CHECK(group.follows_default_limit());  // nothing happened
  respool::detail::set_default_limit(300, false);
  CHECK(group["a"].limit() == 300);
  group.resize(50);  // an explicit resize that works detaches the group from the default
  CHECK_FALSE(group.follows_default_limit());
  respool::detail::set_default_limit(400, false);
  CHECK(group.limit() == 50);
  CHECK(group["a"].limit() == 50);
}

TEST_CASE("PoolGroup: a group destroyed before a set_default_limit is no longer reached", "[pool_group]") {
  DefaultLimitGuard guard;
  {
    Factory f;
    Group group(respool::use_default_limit, f.get());
    group["a"];
  }
  CHECK(respool::detail::set_default_limit(5, false) == 5);  // would crash on a dangling group
}

TEST_CASE("PoolGroup: groups made while the default changes all end up on the final default",
          "[pool_group]") {
  DefaultLimitGuard guard;
  Factory f;
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::vector<std::unique_ptr<Group>> groups;
  auto maker = std::async(std::launch::async, [&] {
    for (int i = 0; i < 300; ++i) {
      auto g = std::make_unique<Group>(respool::use_default_limit, f.get());
      std::lock_guard<std::mutex> lock(mutex);
      groups.push_back(std::move(g));
    }
    stop = true;
  });
  std::size_t limit = 10;
  while (!stop) respool::detail::set_default_limit(++limit, false);
  REQUIRE(maker.wait_for(60s) == std::future_status::ready);
  maker.get();
  const std::size_t final_limit = respool::detail::default_limit();
  for (auto& g : groups) CHECK(g->limit() == final_limit);
}

TEST_CASE("PoolGroup: concurrent lookups, resizes and resets stay consistent", "[pool_group]") {
  Factory f;
  Group group(4, f.get());
  constexpr int threads = 4;
  std::vector<std::future<void>> workers;
  for (int t = 0; t < threads; ++t) {
    workers.push_back(std::async(std::launch::async, [&, t] {
      for (int i = 0; i < 300; ++i) {
        const std::string key = "k" + std::to_string((i + t) % 5);
        if (t == 0 && i % 50 == 49) {
          group.reset();
        } else if (t == 1 && i % 20 == 19) {
          group.resize(4 + static_cast<std::size_t>(i % 3), true);
        } else {
          // May throw pool_closed or limit_exceeded when a reset or forced
          // resize lands in between: both are fine here.
          try {
            auto lease = group[key].try_acquire();
          } catch (const respool::error&) {
          }
        }
      }
    }));
  }
  for (auto& w : workers) {
    REQUIRE(w.wait_for(60s) == std::future_status::ready);
    w.get();
  }
  group.reset();
  CHECK(group.size() == 0);
  CHECK(f.created == f.closed);  // everything made was closed, once
}
