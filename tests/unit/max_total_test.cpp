// respool-test: concurrency
// Unit tests of the cap across keys (PoolGroup::set_max_total,
// pools::set_max_total): the cap is honoured across keys, a key at the cap
// first closes the oldest idle resource of another key, a release anywhere
// in the group serves the group's longest waiter whatever its key (sync and
// async), the timeout error names the group cap, the process-wide groups
// take it, and reset / destruction / lifting the cap with waiters queued.
//
// Waiters are observed through stats() (eventually(), which yields): no
// sleeps, no timed assertions. The one timeout used (1 ms) only has to expire.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "respool/async.hpp"
#include "respool/pool_group.hpp"
#include "respool/pools.hpp"
#include "respool/resource.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using respool::Lease;
using respool::PoolGroup;
using respool::Resource;
using respool_test::eventually;

using Pool = Resource<int>;
using Group = PoolGroup<std::string, Pool>;

// Resources are ints numbered in creation order; closes are recorded.
struct Factory {
  std::atomic<int> created{0};
  std::mutex mutex;
  std::vector<int> closed;  // values, in closing order

  Group::factory_type get() {
    return [this](const std::string&, std::size_t limit) {
      Pool::Options o;
      o.limit = limit;
      o.create = [this] { return ++created; };
      o.close = [this](int& v) {
        std::lock_guard<std::mutex> lock(mutex);
        closed.push_back(v);
      };
      return std::make_unique<Pool>(std::move(o));
    };
  }
  std::vector<int> closes() {
    std::lock_guard<std::mutex> lock(mutex);
    return closed;
  }
};

// Resources in the group: in use + idle, summed over `keys`.
std::size_t total(Group& g, const std::vector<std::string>& keys) {
  std::size_t n = 0;
  for (const auto& k : keys) {
    const auto st = g[k].stats();
    n += st.in_use + st.idle;
  }
  return n;
}

}  // namespace

TEST_CASE("max_total: off by default, and then the cap holds across keys", "[max_total]") {
  Factory f;
  Group g(4, f.get());
  CHECK(g.max_total() == 0);
  {
    std::vector<Lease<int>> held;
    for (const char* k : {"a", "b", "c", "d", "e"})
      held.push_back(g[k].acquire());  // no cap: 5 keys, 5 resources
  }
  g.set_max_total(3);
  CHECK(g.max_total() == 3);
  // Setting the cap below what is there closed two idle resources (idle
  // since before there was a cap: in no particular order).
  CHECK(f.closes().size() == 2);
  CHECK(total(g, {"a", "b", "c", "d", "e"}) == 3);

  auto c = g["c"].acquire();
  auto d = g["d"].acquire();
  auto e = g["e"].acquire();
  CHECK(total(g, {"a", "b", "c", "d", "e"}) == 3);
  // Nothing idle anywhere: a zero-wait acquire for a new key is refused by the group's cap...
  try {
    g["f"].acquire(0s);
    FAIL("no limit_exceeded");
  } catch (const respool::limit_exceeded& ex) {
    CHECK(ex.group_cap());
    CHECK(ex.limit() == 3);
    CHECK(ex.in_use() == 3);
    CHECK(std::string(ex.what()).find("did not wait") != std::string::npos);
  }
  CHECK_FALSE(g["f"].try_acquire().has_value());
  // ... also for keys with room under their own limit.
  CHECK_FALSE(g["c"].try_acquire().has_value());
  CHECK(g["f"].stats().timeouts == 1);
  CHECK(total(g, {"a", "b", "c", "d", "e", "f"}) == 3);
}

TEST_CASE("max_total: at the cap a key closes the oldest idle resource of another key", "[max_total]") {
  Factory f;
  Group g(4, f.get());
  g.set_max_total(3);
  // a, b, c made and given back in that order: a's is the oldest idle.
  {
    auto a = g["a"].acquire();  // 1
    auto b = g["b"].acquire();  // 2
    auto c = g["c"].acquire();  // 3
    a.release();
    b.release();
    c.release();
  }
  auto d = g["d"].acquire();  // closes a's (1), makes 4
  CHECK(*d == 4);
  CHECK(f.closes() == std::vector<int>{1});
  CHECK(g["a"].stats().idle == 0);
  CHECK(g["a"].stats().closed == 1);
  auto e = g["e"].try_acquire();  // closes b's (2), makes 5 (try_acquire too)
  REQUIRE(e.has_value());
  CHECK(**e == 5);
  CHECK(f.closes() == std::vector<int>{1, 2});
  // A key with an idle resource of its own takes it: nothing closed, nothing made.
  auto c = g["c"].acquire();
  CHECK(*c == 3);
  CHECK(f.closes() == std::vector<int>{1, 2});
  CHECK(f.created == 5);
  // A warm resource given back is younger than one given back before it.
  d.release();   // idle: d's 4
  e->release();  // idle: d's 4, e's 5
  auto a = g["a"].acquire();
  CHECK(*a == 6);
  CHECK(f.closes() == std::vector<int>{1, 2, 4});
  CHECK(total(g, {"a", "b", "c", "d", "e"}) == 3);
}

TEST_CASE("max_total: a release in any key serves the group's longest waiter (sync)", "[max_total]") {
  Factory f;
  Group g(2, f.get());
  g.set_max_total(2);
  auto a = g["a"].acquire();  // 1
  auto b = g["b"].acquire();  // 2
  // First a waiter for c, then one for a (both under their own limit: the cap holds them).
  auto for_c = std::async(std::launch::async, [&] { return g["c"].acquire(); });
  REQUIRE(eventually([&] { return g["c"].stats().waiting == 1; }));
  std::atomic<bool> a_served{false};
  auto for_a = std::async(std::launch::async, [&] {
    auto lease = g["a"].acquire();
    a_served = true;
    return lease;
  });
  REQUIRE(eventually([&] { return g["a"].stats().waiting == 1; }));

  // Key a's resource comes back, but c's waiter came first: a's is closed
  // and c's waiter gets a new one; a's own (younger) waiter keeps waiting.
  a.release();
  auto c = for_c.get();
  CHECK(*c == 3);
  CHECK(f.closes() == std::vector<int>{1});
  CHECK_FALSE(a_served);
  CHECK(g["a"].stats().waiting == 1);

  // Then b's comes back: closed too, and a's waiter gets a new resource.
  b.release();
  auto a2 = for_a.get();
  CHECK(*a2 == 4);
  CHECK(f.closes() == std::vector<int>{1, 2});
  CHECK(total(g, {"a", "b", "c"}) == 2);
}

TEST_CASE("max_total: a waiter of the releasing key is served directly when it is the longest",
          "[max_total]") {
  Factory f;
  Group g(1, f.get());  // a is at its own limit: its waiter can only have a's resource
  g.set_max_total(2);
  auto a = g["a"].acquire();  // 1
  auto b = g["b"].acquire();  // 2
  auto for_a = std::async(std::launch::async, [&] { return g["a"].acquire(); });
  REQUIRE(eventually([&] { return g["a"].stats().waiting == 1; }));
  auto for_c = std::async(std::launch::async, [&] { return g["c"].acquire(); });
  REQUIRE(eventually([&] { return g["c"].stats().waiting == 1; }));
  a.release();  // a's waiter is the longest: it gets the resource as it is
  auto a2 = for_a.get();
  CHECK(*a2 == 1);
  CHECK(f.closes().empty());
  CHECK(g["c"].stats().waiting == 1);
  b.release();  // b's goes to c's waiter: closed, a new one made for c
  CHECK(*for_c.get() == 3);
  CHECK(f.closes() == std::vector<int>{2});
}

TEST_CASE("max_total: async waiters are served first come, first served across keys", "[max_total][async]") {
  namespace asio = boost::asio;
  Factory f;
  Group g(2, f.get());
  g.set_max_total(2);
  asio::io_context io;
  auto a = g["a"].acquire();  // 1
  auto b = g["b"].acquire();  // 2
  std::optional<Lease<int>> got_c;
  std::optional<Lease<int>> got_a;
  boost::system::error_code ec_c;
  boost::system::error_code ec_a;
  g["c"].async_acquire(asio::bind_executor(io, [&](boost::system::error_code ec, Lease<int> l) {
    ec_c = ec;
    got_c.emplace(std::move(l));
  }));
  // A sync waiter in between (after c's async one, before a's async one).
  auto for_d = std::async(std::launch::async, [&] { return g["d"].acquire(); });
  REQUIRE(eventually([&] { return g["d"].stats().waiting == 1; }));
  g["a"].async_acquire(10min, asio::bind_executor(io, [&](boost::system::error_code ec, Lease<int> l) {
                         ec_a = ec;
                         got_a.emplace(std::move(l));
                       }));
  CHECK(g["c"].stats().waiting == 1);
  CHECK(g["a"].stats().waiting == 1);

  a.release();  // serves c (the longest): a's closed, a new one for c
  io.restart();
  io.poll();
  REQUIRE(got_c.has_value());
  CHECK_FALSE(ec_c);
  CHECK(**got_c == 3);
  CHECK_FALSE(got_a.has_value());
  CHECK(g["a"].stats().waiting == 1);

  b.release();  // serves d (sync), not a
  auto d = for_d.get();
  CHECK(*d == 4);
  io.restart();
  io.poll();
  CHECK_FALSE(got_a.has_value());

  got_c->release();  // c's goes to a
  io.restart();
  io.poll();
  REQUIRE(got_a.has_value());
  CHECK_FALSE(ec_a);
  CHECK(**got_a == 5);
  CHECK(f.closes() == std::vector<int>{1, 2, 3});
}

TEST_CASE("max_total: async zero-wait and timeouts at the cap", "[max_total][async]") {
  namespace asio = boost::asio;
  Factory f;
  Group g(2, f.get());
  g.set_max_total(1);
  asio::io_context io;
  auto a = g["a"].acquire();
  boost::system::error_code ec0;
  boost::system::error_code ec1;
  g["b"].async_acquire(0s,
                       asio::bind_executor(io, [&](boost::system::error_code ec, Lease<int>) { ec0 = ec; }));
  g["b"].async_acquire(1ms,
                       asio::bind_executor(io, [&](boost::system::error_code ec, Lease<int>) { ec1 = ec; }));
  io.run();
  CHECK(ec0 == respool::errc::limit_exceeded);
  CHECK(ec1 == respool::errc::acquire_timeout);
  CHECK(g["b"].stats().waiting == 0);
  CHECK(g["b"].stats().timeouts == 2);
  // Nothing left behind: a's resource given back serves the next one at once.
  a.release();
  std::optional<Lease<int>> got;
  g["b"].async_acquire(0s, asio::bind_executor(io, [&](boost::system::error_code, Lease<int> l) {
                         got.emplace(std::move(l));
                       }));
  io.restart();
  io.run();
  REQUIRE(got.has_value());
  REQUIRE(static_cast<bool>(*got));
  CHECK(**got == 2);
}

TEST_CASE("max_total: an expired wait says the group's cap was the limit", "[max_total][errors]") {
  Factory f;
  Group g(5, f.get());
  g.set_max_total(2);
  auto a = g["a"].acquire();
  auto a2 = g["a"].acquire();
  try {
    g["b"].acquire(1ms);
    FAIL("no acquire_timeout");
  } catch (const respool::acquire_timeout& e) {
    const std::string what = e.what();
    CHECK(e.group_cap());
    CHECK(e.limit() == 2);
    CHECK(e.in_use() == 2);
    CHECK(e.waiting() == 0);
    CHECK(e.code() == respool::errc::acquire_timeout);
    CHECK(what.find("group max_total of 2 exceeded after waiting") != std::string::npos);
    CHECK(what.find("group: 2 in use, 0 waiting; this pool: 0 in use, 0 waiting") != std::string::npos);
    CHECK(what.find("raise max_total") != std::string::npos);
  }
  // A key at its own limit is refused by its own limit, not the group's.
  Group small(1, f.get());
  small.set_max_total(10);
  auto s = small["a"].acquire();
  try {
    small["a"].acquire(1ms);
    FAIL("no acquire_timeout");
  } catch (const respool::acquire_timeout& e) {
    CHECK_FALSE(e.group_cap());
    CHECK(e.limit() == 1);
    CHECK(std::string(e.what()).find("pool limit of 1 exceeded") != std::string::npos);
  }
}

TEST_CASE("max_total: pools::set_max_total caps the process-wide groups", "[max_total][pools]") {
  namespace pools = respool::pools;
  pools::reset();
  CHECK(pools::get_max_total() == 0);
  CHECK(pools::set_max_total(2) == 2);
  CHECK(pools::get_max_total() == 2);
  CHECK(pools::connections.max_total() == 2);
  CHECK(pools::producers.max_total() == 2);
  {
    auto one = pools::connections["memory://guest:s3cret@cap-one/"].acquire();
    auto two = pools::connections["memory://guest:s3cret@cap-two/"].acquire();
    auto& three = pools::connections["memory://guest:s3cret@cap-three/"];
    try {
      three.acquire(1ms);
      FAIL("no connection_acquire_timeout");
    } catch (const respool::connection_acquire_timeout& e) {
      const std::string what = e.what();
      CHECK(e.group_cap());
      CHECK(what.find("connection pool group max_total of 2 exceeded") != std::string::npos);
      CHECK(what.find("pool memory://guest:**@cap-three") != std::string::npos);
      CHECK(what.find("s3cret") == std::string::npos);
    }
    two.release();  // idle: the next key closes it
    auto three_lease = three.acquire(0s);
    CHECK(pools::connections["memory://guest:s3cret@cap-two/"].stats().closed == 1);
  }
  // Lifted: limit x keys again.
  pools::set_max_total(0);
  CHECK(pools::get_max_total() == 0);
  {
    std::vector<respool::Lease<respool::Connection>> held;
    for (const char* url : {"memory://cap-one/", "memory://cap-two/", "memory://cap-three/"})
      held.push_back(pools::connections[url].acquire(0s));
  }
  pools::reset();
}

TEST_CASE("max_total: reset() and destruction wake waiters with pool_closed", "[max_total]") {
  Factory f;
  SECTION("reset") {
    Group g(2, f.get());
    g.set_max_total(1);
    auto a = g["a"].acquire();
    auto waiting = std::async(std::launch::async, [&] { g["b"].acquire(); });
    REQUIRE(eventually([&] { return g["b"].stats().waiting == 1; }));
    g.reset();
    CHECK_THROWS_AS(waiting.get(), respool::pool_closed);
    // The cap survives the reset: the lease still out counts until it comes home.
    CHECK(g.max_total() == 1);
    CHECK_FALSE(g["c"].try_acquire().has_value());
    a.release();
    auto c = g["c"].try_acquire();
    CHECK(c.has_value());
  }
  SECTION("destruction, with a lease outliving the group") {
    std::optional<Group> g;
    g.emplace(2, f.get());
    g->set_max_total(1);
    auto a = (*g)["a"].acquire();
    Pool& b = (*g)["b"];
    auto waiting = std::async(std::launch::async, [&] { b.acquire(); });
    REQUIRE(eventually([&] { return b.stats().waiting == 1; }));
    g.reset();
    CHECK_THROWS_AS(waiting.get(), respool::pool_closed);
    a.release();  // gives its unit back to a cap the group no longer holds
    CHECK(f.closes() == std::vector<int>{1});
  }
}

TEST_CASE("max_total: lifting or raising the cap serves the waiters it held", "[max_total]") {
  Factory f;
  Group g(2, f.get());
  g.set_max_total(1);
  auto a = g["a"].acquire();
  auto for_b = std::async(std::launch::async, [&] { return g["b"].acquire(); });
  REQUIRE(eventually([&] { return g["b"].stats().waiting == 1; }));
  SECTION("raised") {
    g.set_max_total(2);
    auto b = for_b.get();
    CHECK(*b == 2);
    CHECK_FALSE(g["c"].try_acquire().has_value());
  }
  SECTION("lifted") {
    g.set_max_total(0);
    auto b = for_b.get();
    CHECK(*b == 2);
    CHECK(g["c"].try_acquire().has_value());
  }
  CHECK(f.closes().empty());
}

TEST_CASE("max_total: resize() and set_limit-style changes keep working with a cap", "[max_total]") {
  Factory f;
  Group g(1, f.get());
  g.set_max_total(3);
  auto a = g["a"].acquire();
  auto for_a = std::async(std::launch::async, [&] { return g["a"].acquire(); });
  REQUIRE(eventually([&] { return g["a"].stats().waiting == 1; }));
  g.resize(2);  // a's own limit grows: its waiter is served by the group
  auto a2 = for_a.get();
  CHECK(*a2 == 2);
  auto b = g["b"].acquire();  // the third resource
  CHECK_FALSE(g["c"].try_acquire().has_value());
  CHECK_THROWS_AS(g.resize(1), respool::error);  // a has two in use
  g.resize(1, true);  // forced: everything in use closed; the cap's units come back with the leases
  a.release();
  a2.release();
  b.release();
  CHECK(g["c"].try_acquire().has_value());
}

TEST_CASE("max_total: a forked child's group starts afresh under the same cap", "[max_total][fork]") {
  if (respool_test::sanitized) return;  // (TSan cannot follow a fork of a multi-threaded parent)
  Factory f;
  Group g(2, f.get());
  g.set_max_total(2);
  auto a = g["a"].acquire();
  auto b = g["b"].acquire();
  // A parent thread waits at the cap while the parent forks.
  auto for_c = std::async(std::launch::async, [&] { return g["c"].acquire(); });
  REQUIRE(eventually([&] { return g["c"].stats().waiting == 1; }));
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::alarm(20);  // watchdog: a deadlock ends in SIGALRM
    int code = 0;
    try {
      if (g.max_total() != 2) code = 1;
      // The parent's pools and cap are gone: two keys fit, a third is refused by the cap.
      auto x = g["a"].acquire(0s);
      auto y = g["c"].acquire(0s);
      try {
        g["d"].acquire(0s);
        code = 2;
      } catch (const respool::limit_exceeded& e) {
        if (!e.group_cap()) code = 3;
      }
      y.release();
      auto z = g["d"].acquire(0s);  // closes c's idle one
      g.reset();
    } catch (...) {
      code = 4;
    }
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  a.release();  // the parent goes on: its waiter is served
  CHECK(*for_c.get() == 3);
}
