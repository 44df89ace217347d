// respool-test: concurrency
// Unit tests of the production policies (respool/pool_policy.hpp): idle
// timeout, max lifetime with jitter, validation bypass, leak detection,
// min_idle, the observer, the wait/peak statistics and the exhausted-error
// message. Time is an injected clock (Options::clock) the tests advance by
// hand: nothing sleeps and nothing depends on the machine's speed.

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "respool/async.hpp"
#include "respool/resource.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using respool::LeakInfo;
using respool::Lease;
using respool::PoolPolicy;
using respool::Resource;
using time_point = std::chrono::steady_clock::time_point;

// A clock the test moves by hand (starts an hour after the epoch: time_point{} means "unset").
struct FakeClock {
  std::atomic<std::int64_t> ns{std::chrono::nanoseconds(1h).count()};
  std::atomic<int> reads{0};
  time_point now() {
    reads.fetch_add(1, std::memory_order_relaxed);
    return time_point(std::chrono::nanoseconds(ns.load()));
  }
  void advance(std::chrono::nanoseconds d) { ns.fetch_add(d.count()); }
};

// Resources are ints numbered 1, 2, 3... in creation order.
struct Counters {
  std::atomic<int> created{0};
  std::atomic<int> closed{0};
  std::atomic<int> validated{0};
};

Resource<int>::Options options(FakeClock& clock, Counters& c, std::size_t limit, PoolPolicy policy = {}) {
  Resource<int>::Options o;
  o.limit = limit;
  o.create = [&c] { return ++c.created; };
  o.close = [&c](int&) { ++c.closed; };
  o.validate = [&c](int&) {
    ++c.validated;
    return true;
  };
  o.policy = std::move(policy);
  o.clock = [&clock] { return clock.now(); };
  return o;
}

// ---------------------------------------------------------------------------
// Idle timeout

TEST_CASE("policy: an idle resource past idle_timeout is closed instead of handed out", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.idle_timeout = 30s;
  Resource<int> pool(options(clock, c, 2, p));
  pool.acquire().release();  // #1 idle from now
  clock.advance(30s);        // exactly the timeout: still fresh
  {
    auto lease = pool.acquire();
    CHECK(*lease == 1);
  }
  clock.advance(30s + 1ns);
  auto lease = pool.acquire();
  CHECK(*lease == 2);  // #1 was closed, #2 created
  CHECK(c.closed == 1);
  const auto st = pool.stats();
  CHECK(st.expired == 1);
  CHECK(st.closed == 1);
  CHECK(st.created == 2);
}

TEST_CASE("policy: an expired resource is replaced by the next idle one, each checked in turn", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.idle_timeout = 10s;
  Resource<int> pool(options(clock, c, 4, p));
  {
    auto a = pool.acquire();  // #1
    auto b = pool.acquire();  // #2
    auto d = pool.acquire();  // #3
    a.release();              // idle: 1 (coldest)
    clock.advance(6s);
    b.release();  // idle: 1, 2
    d.release();  // idle: 1, 2, 3 (warmest)
  }
  clock.advance(5s);  // #1 idle 11 s (expired), #2 and #3 idle 5 s
  // The warmest (#3) is fresh: handed out as is.
  CHECK(*pool.acquire() == 3);
  clock.advance(6s);  // #2 idle 11 s, #3 idle 6 s
  auto lease = pool.acquire();
  CHECK(*lease == 3);
  lease.release();  // the release also closes the coldest idle one if expired (#1, then #2 next time)
  CHECK(pool.stats().expired >= 1);
  clock.advance(11s);  // everything expired
  lease = pool.acquire();
  CHECK(*lease == 4);  // every idle one closed, none handed out
  CHECK(pool.stats().idle == 0);
  CHECK(c.closed == 3);
  CHECK(pool.stats().expired == 3);
  CHECK(c.validated == 2);  // only the two fresh hand-outs of #3: an expired one is never validated
}

TEST_CASE("policy: a release closes the coldest idle resource once it expired", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.idle_timeout = 10s;
  Resource<int> pool(options(clock, c, 2, p));
  auto a = pool.acquire();  // #1
  auto b = pool.acquire();  // #2
  a.release();
  clock.advance(8s);
  b.release();  // idle: 1 (8 s), 2 (0 s)
  clock.advance(3s);
  pool.acquire().release();  // takes #2; its release finds #1 expired (11 s)
  CHECK(c.closed == 1);
  CHECK(pool.stats().idle == 1);
  CHECK(pool.stats().expired == 1);
}

// ---------------------------------------------------------------------------
// Max lifetime

TEST_CASE("policy: max_lifetime retires a resource in constant use on release", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.max_lifetime = 10s;
  p.lifetime_jitter = 0;
  Resource<int> pool(options(clock, c, 1, p));
  for (int i = 0; i < 9; ++i) {
    auto lease = pool.acquire();
    CHECK(*lease == 1);
    clock.advance(1s);  // held 1 s, given back at once: never idle long
  }
  {
    auto lease = pool.acquire();  // 9 s old
    CHECK(*lease == 1);
    clock.advance(1s);
  }  // 10 s old when given back: retired
  CHECK(c.closed == 1);
  CHECK(pool.stats().idle == 0);
  CHECK(pool.stats().expired == 1);
  CHECK(*pool.acquire() == 2);
}

TEST_CASE("policy: max_lifetime closes an idle resource instead of handing it out", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.max_lifetime = 60s;
  p.lifetime_jitter = 0;
  Resource<int> pool(options(clock, c, 1, p));
  pool.acquire().release();
  clock.advance(59s);
  CHECK(*pool.acquire() == 1);
  clock.advance(1s);
  CHECK(*pool.acquire() == 2);
  CHECK(pool.stats().expired == 1);
}

TEST_CASE("policy: lifetime_jitter spreads the expiry of resources created together", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.max_lifetime = 100s;
  p.lifetime_jitter = 0.5;  // each lives between 50 s and 100 s
  constexpr std::size_t n = 200;
  Resource<int> pool(options(clock, c, n, p));
  {
    std::vector<Lease<int>> all;
    for (std::size_t i = 0; i < n; ++i) all.push_back(pool.acquire());
  }
  clock.advance(50s - 1ns);
  CHECK(pool.maintain().expired == 0);
  clock.advance(25s);  // about half are past their lifetime
  const std::size_t early = pool.maintain().expired;
  CHECK(early > n / 8);
  CHECK(early < n - n / 8);
  clock.advance(25s + 1ns);  // 100 s: all
  CHECK(pool.maintain().expired == n - early);
  CHECK(pool.stats().idle == 0);
}

// ---------------------------------------------------------------------------
// Validation bypass

TEST_CASE("policy: validate is skipped for a resource used less than validation_bypass ago", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.validation_bypass = 500ms;
  Resource<int> pool(options(clock, c, 1, p));
  pool.acquire().release();  // created: never validated
  clock.advance(499ms);
  pool.acquire().release();
  CHECK(c.validated == 0);
  clock.advance(500ms);
  pool.acquire().release();
  CHECK(c.validated == 1);
  // Without the bypass every hand-out of an idle resource validates.
  pool.set_policy({});
  pool.acquire().release();
  pool.acquire().release();
  CHECK(c.validated == 3);
}

// ---------------------------------------------------------------------------
// Leak detection

TEST_CASE("policy: a lease held past leak_threshold is reported once, by maintain() or on release",
          "[policy]") {
  FakeClock clock;
  Counters c;
  std::vector<LeakInfo> leaks;
  PoolPolicy p;
  p.leak_threshold = 10s;
  p.on_leak = [&leaks](const LeakInfo& info) { leaks.push_back(info); };
  Resource<int> pool(options(clock, c, 2, p));

  auto held = pool.acquire();
  const int line = __LINE__ - 1;
  (void)line;
  clock.advance(10s);
  CHECK(pool.maintain().leaks == 0);  // not longer than the threshold yet
  clock.advance(1s);
  CHECK(pool.maintain().leaks == 1);
  REQUIRE(leaks.size() == 1);
  CHECK(leaks[0].held == 11s);
  CHECK_FALSE(leaks[0].released);
#if RESPOOL_HAS_SOURCE_LOCATION
  CHECK(leaks[0].where.line() == static_cast<std::uint_least32_t>(line));
  CHECK(std::string(leaks[0].where.file_name()).find("policy_test.cpp") != std::string::npos);
#endif
  clock.advance(60s);
  CHECK(pool.maintain().leaks == 0);  // once per lease
  held.release();                     // not again on release
  CHECK(leaks.size() == 1);

  // Found on release, without a maintain() pass.
  auto second = pool.acquire();
  clock.advance(12s);
  second.release();
  REQUIRE(leaks.size() == 2);
  CHECK(leaks[1].held == 12s);
  CHECK(leaks[1].released);
  // A short lease is no leak.
  auto quick = pool.acquire();
  clock.advance(1s);
  quick.release();
  CHECK(leaks.size() == 2);
  CHECK(pool.stats().leaks == 2);
}

TEST_CASE("policy: leaks are counted without a callback, and a throwing callback is contained", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.leak_threshold = 1s;
  Resource<int> pool(options(clock, c, 1, p));
  auto lease = pool.acquire();
  clock.advance(2s);
  lease.release();
  CHECK(pool.stats().leaks == 1);
  p.on_leak = [](const LeakInfo&) { throw std::runtime_error("bad callback"); };
  pool.set_policy(p);
  lease = pool.acquire();
  clock.advance(2s);
  CHECK(pool.maintain().leaks == 1);
  lease.release();
  CHECK(pool.stats().leaks == 2);
  CHECK(pool.stats().idle == 1);
}

// ---------------------------------------------------------------------------
// min_idle

TEST_CASE("policy: maintain() creates resources up to min_idle, within the limit", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.min_idle = 3;
  Resource<int> pool(options(clock, c, 4, p));
  auto r = pool.maintain();
  CHECK(r.created == 3);
  CHECK(pool.stats().idle == 3);
  CHECK(pool.maintain().created == 0);
  auto a = pool.acquire();
  auto b = pool.acquire();
  CHECK(pool.maintain().created == 1);  // limit 4: 2 in use + 2 idle
  CHECK(pool.stats().idle == 2);
  CHECK(pool.stats().created == 4);
}

TEST_CASE("policy: maintain() after idle expiry refills min_idle with fresh resources", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.min_idle = 2;
  p.idle_timeout = 10s;
  Resource<int> pool(options(clock, c, 4, p));
  pool.maintain();
  clock.advance(11s);
  auto r = pool.maintain();
  CHECK(r.expired == 2);
  CHECK(r.created == 2);
  CHECK(c.closed == 2);
  CHECK(pool.stats().idle == 2);
  CHECK(*pool.acquire() >= 3);
}

TEST_CASE("policy: a factory failure ends a maintain() pass and frees its reservations", "[policy]") {
  FakeClock clock;
  Counters c;
  PoolPolicy p;
  p.min_idle = 3;
  auto o = options(clock, c, 4, p);
  std::atomic<bool> fail{true};
  o.create = [&] {
    if (fail) throw std::runtime_error("down");
    return ++c.created;
  };
  Resource<int> pool(std::move(o));
  CHECK(pool.maintain().created == 0);
  CHECK(pool.stats().in_use == 0);
  CHECK(pool.stats().idle == 0);
  fail = false;
  CHECK(pool.maintain().created == 3);
}

// ---------------------------------------------------------------------------
// Observer, statistics

struct Recorder final : respool::PoolObserver {
  std::mutex mutex;
  std::vector<std::chrono::nanoseconds> creates, waits, uses;
  std::atomic<int> timeouts{0};
  void on_create(std::chrono::nanoseconds d) override {
    std::lock_guard<std::mutex> l(mutex);
    creates.push_back(d);
  }
  void on_wait(std::chrono::nanoseconds d) override {
    std::lock_guard<std::mutex> l(mutex);
    waits.push_back(d);
  }
  void on_use(std::chrono::nanoseconds d) override {
    std::lock_guard<std::mutex> l(mutex);
    uses.push_back(d);
  }
  void on_timeout() override { ++timeouts; }
};

TEST_CASE("policy: the observer gets create, wait and use times and timeouts", "[policy]") {
  FakeClock clock;
  Counters c;
  Recorder rec;
  PoolPolicy p;
  p.observer = &rec;
  auto o = options(clock, c, 1, p);
  o.create = [&] {
    clock.advance(2s);  // a slow factory
    return ++c.created;
  };
  Resource<int> pool(std::move(o));
  {
    auto lease = pool.acquire();
    clock.advance(3s);
    CHECK_THROWS_AS(pool.acquire(0s), respool::limit_exceeded);
  }
  pool.acquire().release();
  REQUIRE(rec.creates.size() == 1);
  CHECK(rec.creates[0] == 2s);
  REQUIRE(rec.waits.size() == 2);
  CHECK(rec.waits[0] == 2s);  // the creation
  CHECK(rec.waits[1] == 0s);
  REQUIRE(rec.uses.size() == 2);
  CHECK(rec.uses[0] == 3s);
  CHECK(rec.uses[1] == 0s);
  CHECK(rec.timeouts == 1);
}

TEST_CASE("policy: the async acquire reports to the observer and skips expired resources", "[policy]") {
  FakeClock clock;
  Counters c;
  Recorder rec;
  PoolPolicy p;
  p.observer = &rec;
  p.idle_timeout = 5s;
  Resource<int> pool(options(clock, c, 1, p));
  pool.acquire().release();
  clock.advance(6s);
  boost::asio::io_context io;
  int got = 0;
  pool.async_acquire(boost::asio::bind_executor(io, [&](boost::system::error_code ec, Lease<int> lease) {
    REQUIRE_FALSE(ec);
    got = *lease;
    clock.advance(1s);
  }));
  io.run();
  CHECK(got == 2);
  CHECK(pool.stats().expired == 1);
  CHECK(rec.waits.size() == 2);
  CHECK(rec.uses.size() == 2);
  CHECK(rec.uses[1] == 1s);
  // A zero-timeout async acquire on a full pool is a timeout for the observer too.
  auto held = pool.acquire();
  io.restart();
  pool.async_acquire(0s, boost::asio::bind_executor(io, [](boost::system::error_code, Lease<int>) {}));
  io.run();
  CHECK(rec.timeouts == 1);
}

TEST_CASE("policy: stats() has the peak in use and the time spent waiting", "[policy]") {
  FakeClock clock;
  Counters c;
  Resource<int> pool(options(clock, c, 2, {}));
  auto a = pool.acquire();
  auto b = pool.acquire();
  CHECK(pool.stats().peak_in_use == 2);
  std::thread waiter([&] { pool.acquire().release(); });
  REQUIRE(respool_test::eventually([&] { return pool.stats().waiting == 1; }));
  clock.advance(5s);
  a.release();
  waiter.join();
  b.release();
  const auto st = pool.stats();
  CHECK(st.peak_in_use == 2);
  CHECK(st.waits == 1);
  CHECK(st.wait_time == 5s);
}

// ---------------------------------------------------------------------------
// Off by default, and switched on later

TEST_CASE("policy: with every policy off a warm acquire + release never reads the clock", "[policy]") {
  FakeClock clock;
  Counters c;
  Resource<int> pool(options(clock, c, 1, {}));
  pool.acquire().release();  // a creation reads it (a resource's age is always known)
  const int reads = clock.reads;
  for (int i = 0; i < 10; ++i) pool.acquire().release();
  CHECK(clock.reads == reads);
  clock.advance(1000h);
  CHECK(*pool.acquire() == 1);  // nothing expires
}

TEST_CASE("policy: set_policy applies to the resources already there", "[policy]") {
  FakeClock clock;
  Counters c;
  Resource<int> pool(options(clock, c, 2, {}));
  pool.acquire().release();
  clock.advance(1h);
  PoolPolicy p;
  p.max_lifetime = 30min;
  p.lifetime_jitter = 0;
  pool.set_policy(p);  // #1 is an hour old: past its lifetime
  CHECK(*pool.acquire() == 2);
  CHECK(pool.policy().max_lifetime == 30min);
  // Idle time counts from the switch-on: nothing was measured before.
  p = {};
  pool.set_policy(p);
  pool.acquire().release();
  clock.advance(1h);
  p.idle_timeout = 10min;
  pool.set_policy(p);
  CHECK(*pool.acquire() == 2);
}

// ---------------------------------------------------------------------------
// Exhausted errors

TEST_CASE("policy: an exhausted pool says which pool, how full, and what to do", "[policy][errors]") {
  FakeClock clock;
  Counters c;
  auto o = options(clock, c, 2, {});
  o.name = "workers";
  Resource<int> pool(std::move(o));
  auto a = pool.acquire();
  auto b = pool.acquire();
  try {
    pool.acquire(0s);
    FAIL("no limit_exceeded");
  } catch (const respool::limit_exceeded& e) {
    const std::string what = e.what();
    CHECK(what.find("pool limit of 2 exceeded (did not wait; pool workers: 2 in use, 0 waiting); ") !=
          std::string::npos);
    CHECK(what.find("raise the limit") != std::string::npos);
    CHECK(what.find("leak") != std::string::npos);
    CHECK(e.in_use() == 2);
    CHECK(e.waiting() == 0);
  }
  std::thread waiter([&] { pool.acquire().release(); });
  REQUIRE(respool_test::eventually([&] { return pool.stats().waiting == 1; }));
  try {
    pool.acquire(1ms);
    FAIL("no acquire_timeout");
  } catch (const respool::acquire_timeout& e) {
    CHECK(std::string(e.what()).find(" ms (pool workers: 2 in use, 1 waiting); raise the limit") !=
          std::string::npos);
    CHECK(e.waiting() == 1);
  }
  a.release();
  waiter.join();
}

// ---------------------------------------------------------------------------
// The pool executor and the reaper (respool/async.hpp)

TEST_CASE("policy: async_acquire handlers with no executor run on the pool's executor", "[policy][async]") {
  FakeClock clock;
  Counters c;
  boost::asio::io_context io;
  auto o = options(clock, c, 1, {});
  o.executor = respool::pool_executor(io.get_executor());
  Resource<int> pool(std::move(o));
  std::thread::id ran_on;
  int got = 0;
  pool.async_acquire([&](boost::system::error_code ec, Lease<int> lease) {
    REQUIRE_FALSE(ec);
    ran_on = std::this_thread::get_id();
    got = *lease;
  });
  io.run();  // the queued operation is work on io: run() returns once the handler ran
  CHECK(got == 1);
  CHECK(ran_on == std::this_thread::get_id());

  // A handler's own executor wins.
  boost::asio::io_context other;
  got = 0;
  pool.async_acquire(
      boost::asio::bind_executor(other, [&](boost::system::error_code, Lease<int> lease) { got = *lease; }));
  io.restart();
  CHECK(io.poll() == 0);
  other.run();
  CHECK(got == 1);
}

TEST_CASE("policy: a pool executor of the wrong type is refused when used", "[policy][async]") {
  FakeClock clock;
  Counters c;
  boost::asio::io_context io;
  auto o = options(clock, c, 1, {});
  o.executor = io.get_executor();  // not wrapped in an any_io_executor
  Resource<int> pool(std::move(o));
  CHECK_THROWS_AS(pool.async_acquire([](boost::system::error_code, Lease<int>) {}), std::invalid_argument);
  CHECK(pool.stats().in_use == 0);
  pool.set_executor(respool::pool_executor(io.get_executor()));
  bool done = false;
  pool.async_acquire([&](boost::system::error_code ec, Lease<int>) { done = !ec; });
  io.run();
  CHECK(done);
}

TEST_CASE("policy: the reaper closes expired idle resources and keeps min_idle, on its executor",
          "[policy][async]") {
  FakeClock clock;
  Counters c;
  std::vector<LeakInfo> leaks;
  PoolPolicy p;
  p.idle_timeout = 10s;
  p.min_idle = 2;
  p.leak_threshold = 1min;
  p.on_leak = [&leaks](const LeakInfo& info) { leaks.push_back(info); };
  Resource<int> pool(options(clock, c, 4, p));
  boost::asio::io_context io;
  respool::Reaper reaper(pool, io.get_executor(), 1ms);
  auto run_passes = [&](std::size_t n) {
    const std::size_t target = reaper.passes() + n;
    while (reaper.passes() < target) io.run_one();
  };
  run_passes(1);
  CHECK(pool.stats().idle == 2);  // min_idle
  auto held = pool.acquire();
  clock.advance(11s);
  run_passes(1);
  CHECK(pool.stats().expired == 1);  // the idle one that was not leased
  CHECK(pool.stats().idle == 2);     // and replaced
  clock.advance(2min);
  run_passes(1);
  CHECK(leaks.size() == 1);
  reaper.stop();
  io.run();  // the cancelled timer completes; nothing is left
  const std::size_t passes = reaper.passes();
  CHECK(io.stopped());
  CHECK(reaper.passes() == passes);
}

TEST_CASE("policy: a reaper needs a positive interval", "[policy][async]") {
  Resource<int> pool(1, [] { return 1; });
  boost::asio::io_context io;
  CHECK_THROWS_AS(respool::Reaper(pool, io.get_executor(), std::chrono::seconds(0)), std::invalid_argument);
}

}  // namespace
