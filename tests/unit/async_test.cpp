// respool-test: concurrency
// Unit tests of respool/async.hpp: Resource<T>::async_acquire on Boost.Asio
// with every kind of completion token, timeouts, cancellation, closing, and
// one FIFO queue shared with synchronous acquirers.
//
// Builds in C++17 and C++20; the coroutine (use_awaitable) cases need C++20.
// No sleeps synchronise anything: io_contexts are run to completion on the
// test thread, or cases wait on futures / spin on stats().waiting.

#include "respool/async.hpp"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#if defined(__cpp_impl_coroutine) && defined(BOOST_ASIO_HAS_CO_AWAIT)
#define RESPOOL_TEST_COROUTINES 1
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#endif

#include <catch2/catch.hpp>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using boost::system::error_code;
using respool::errc;
using respool::Lease;
using respool::PoolStats;
using respool::Resource;
using Clock = std::chrono::steady_clock;

// Resources are ints numbered 1, 2, 3... in creation order.
struct Tracker {
  std::atomic<int> created{0};
  std::atomic<int> closed{0};

  Resource<int>::Options options(std::size_t limit, std::size_t preload = 0) {
    Resource<int>::Options o;
    o.limit = limit;
    o.preload = preload;
    o.create = [this] { return ++created; };
    o.close = [this](int&) { ++closed; };
    return o;
  }
};

// What a completion handler saw.
struct Outcome {
  bool done = false;
  error_code ec;
  Lease<int> lease;
  std::thread::id thread;
};

// A handler (bound to nothing) that records into `out`.
auto record(Outcome& out) {
  return [&out](error_code ec, Lease<int> lease) {
    out.done = true;
    out.ec = ec;
    out.lease = std::move(lease);
    out.thread = std::this_thread::get_id();
  };
}

template <class Condition>
bool eventually(Condition condition) {
  const auto give_up = Clock::now() + 60s;
  while (!condition()) {
    if (Clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

void check_consistent(const Resource<int>& pool, const Tracker& t) {
  const PoolStats st = pool.stats();
  CHECK(st.waiting == 0);
  CHECK(st.created == static_cast<std::size_t>(t.created.load()));
  CHECK(st.closed == static_cast<std::size_t>(t.closed.load()));
  CHECK(st.created == st.closed + st.idle + st.in_use);
}

struct factory_error : std::runtime_error {
  factory_error() : std::runtime_error("factory failed") {}
};

}  // namespace

// ----- callbacks and executors --------------------------------------------------

TEST_CASE("async_acquire: a callback runs on its executor, never inline in the initiating call", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(2, 1));
  asio::io_context io;
  Outcome idle_one, fresh_one;
  bool initiated = false;
  bool idle_ran_inline = true, fresh_ran_inline = true;
  // Initiate from inside the io_context, so an inline completion could happen.
  asio::post(io, [&] {
    pool.async_acquire(asio::bind_executor(io, [&](error_code ec, Lease<int> lease) {
      idle_ran_inline = !initiated;
      record(idle_one)(ec, std::move(lease));
    }));
    pool.async_acquire(asio::bind_executor(io, [&](error_code ec, Lease<int> lease) {
      fresh_ran_inline = !initiated;
      record(fresh_one)(ec, std::move(lease));
    }));
    initiated = true;
  });
  io.run();
  REQUIRE(idle_one.done);
  REQUIRE(fresh_one.done);
  CHECK_FALSE(idle_ran_inline);
  CHECK_FALSE(fresh_ran_inline);
  CHECK(!idle_one.ec);
  CHECK(!fresh_one.ec);
  CHECK(*idle_one.lease == 1);   // the preloaded one
  CHECK(*fresh_one.lease == 2);  // created for it
  CHECK(pool.stats().in_use == 2);
}

TEST_CASE("async_acquire: the handler runs on the io thread when another thread releases", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  auto held = pool.acquire();
  asio::io_context io;
  Outcome out;
  pool.async_acquire(asio::bind_executor(io, record(out)));
  CHECK(pool.stats().waiting == 1);
  std::promise<std::thread::id> io_thread;
  auto io_thread_id = io_thread.get_future();
  std::thread runner([&] {
    io_thread.set_value(std::this_thread::get_id());
    io.run();  // returns once the queued operation completed (it counts as work)
  });
  const auto io_id = io_thread_id.get();
  held.release();  // from the test thread, not the io thread
  runner.join();
  REQUIRE(out.done);
  CHECK(!out.ec);
  CHECK(out.thread == io_id);
  CHECK(out.thread != std::this_thread::get_id());
  CHECK(*out.lease == 1);
}

TEST_CASE("async_acquire: the handler never runs inside Lease::release()", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  Outcome out;
  bool inside_release = false;
  bool ran_inside_release = true;
  pool.async_acquire(asio::bind_executor(io, [&](error_code ec, Lease<int> lease) {
    ran_inside_release = inside_release;
    record(out)(ec, std::move(lease));
  }));
  // Release on the io thread itself (here: the test thread runs io).
  asio::post(io, [&] {
    inside_release = true;
    held.release();
    inside_release = false;
  });
  io.run();
  REQUIRE(out.done);
  CHECK_FALSE(ran_inside_release);
  CHECK(*out.lease == 1);
}

TEST_CASE("async_acquire: a queued operation is outstanding work on its executor", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  Outcome out;
  pool.async_acquire(asio::bind_executor(io, record(out)));
  io.poll();
  CHECK_FALSE(io.stopped());  // run() would keep waiting for it
  CHECK_FALSE(out.done);
  held.release();
  io.run();
  CHECK(out.done);
  CHECK(io.stopped());
}

TEST_CASE("async_acquire: the handler's own executor is used, not the initiator's", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context initiator, target;
  Outcome out;
  asio::post(initiator, [&] { pool.async_acquire(asio::bind_executor(target, record(out))); });
  initiator.run();
  CHECK_FALSE(out.done);
  target.run();
  CHECK(out.done);
  CHECK(*out.lease == 1);
}

TEST_CASE("async_acquire: a strand-bound handler", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto strand = asio::make_strand(io);
  Outcome out;
  bool in_strand = false;
  pool.async_acquire(asio::bind_executor(strand, [&](error_code ec, Lease<int> lease) {
    in_strand = strand.running_in_this_thread();
    record(out)(ec, std::move(lease));
  }));
  io.run();
  REQUIRE(out.done);
  CHECK(in_strand);
}

TEST_CASE("async_acquire: a handler without an executor runs on the system executor", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  std::promise<int> got;
  auto value = got.get_future();
  pool.async_acquire([&](error_code ec, Lease<int> lease) { got.set_value(ec ? -1 : *lease); });
  REQUIRE(value.wait_for(60s) == std::future_status::ready);
  CHECK(value.get() == 1);
  REQUIRE(eventually([&] { return pool.stats().in_use == 0; }));
}

// ----- completion tokens ---------------------------------------------------------

TEST_CASE("async_acquire: use_future", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  std::future<Lease<int>> f = pool.async_acquire(asio::use_future);
  REQUIRE(f.wait_for(60s) == std::future_status::ready);
  Lease<int> lease = f.get();
  CHECK(*lease == 1);

  // The failing futures complete on an io_context run by this thread: a
  // std::future carrying an exception across threads makes ThreadSanitizer
  // report a false race (libstdc++'s exception_ptr refcount is not instrumented).
  SECTION("an expired wait throws system_error with acquire_timeout") {
    asio::io_context io;
    auto late = pool.async_acquire(20ms, asio::bind_executor(io, asio::use_future));
    io.run();
    REQUIRE(late.wait_for(0s) == std::future_status::ready);
    try {
      late.get();
      FAIL("no timeout");
    } catch (const boost::system::system_error& e) {
      CHECK(e.code() == errc::acquire_timeout);
      CHECK(e.code() != errc::limit_exceeded);
    }
  }
  SECTION("a zero timeout throws system_error with limit_exceeded") {
    asio::io_context io;
    auto refused = pool.async_acquire(0ms, asio::bind_executor(io, asio::use_future));
    io.run();
    REQUIRE(refused.wait_for(0s) == std::future_status::ready);
    try {
      refused.get();
      FAIL("no refusal");
    } catch (const boost::system::system_error& e) {
      CHECK(e.code() == errc::limit_exceeded);
    }
  }
  SECTION("served when the lease comes back") {
    auto waiting = pool.async_acquire(1h, asio::use_future);
    REQUIRE(eventually([&] { return pool.stats().waiting == 1; }));
    lease.release();
    REQUIRE(waiting.wait_for(60s) == std::future_status::ready);
    CHECK(*waiting.get() == 1);
  }
  lease.release();
  REQUIRE(eventually([&] { return pool.stats().in_use == 0; }));
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: deferred starts nothing until invoked", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  auto op = pool.async_acquire(asio::deferred);
  auto timed_op = pool.async_acquire(10ms, asio::deferred);
  CHECK(pool.stats().waiting == 0);  // lazy: not queued yet
  Outcome out, timed_out;
  std::move(op)(asio::bind_executor(io, record(out)));
  CHECK(pool.stats().waiting == 1);
  std::move(timed_op)(asio::bind_executor(io, record(timed_out)));
  CHECK(pool.stats().waiting == 2);
  held.release();
  io.run();
  REQUIRE(out.done);
  CHECK(*out.lease == 1);
  REQUIRE(timed_out.done);
  CHECK(timed_out.ec == errc::acquire_timeout);
}

TEST_CASE("async_acquire: as_tuple gives the (error_code, Lease) pair", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  std::optional<std::tuple<error_code, Lease<int>>> first, second;
  pool.async_acquire(asio::as_tuple(asio::bind_executor(
      io, [&](std::tuple<error_code, Lease<int>> result) { first = std::move(result); })));
  pool.async_acquire(
      0s, asio::as_tuple(asio::bind_executor(
              io, [&](std::tuple<error_code, Lease<int>> result) { second = std::move(result); })));
  io.run();
  REQUIRE(first);
  auto& [ec, lease] = *first;
  CHECK(!ec);
  CHECK(*lease == 1);
  REQUIRE(second);
  auto& [ec2, lease2] = *second;
  CHECK(ec2 == errc::limit_exceeded);  // a code, no exception
  CHECK_FALSE(lease2);
  // as_tuple composes with deferred too.
  lease.release();
  io.restart();
  std::optional<std::tuple<error_code, Lease<int>>> third;
  auto op = pool.async_acquire(1s, asio::as_tuple(asio::deferred));
  std::move(op)(
      asio::bind_executor(io, [&](std::tuple<error_code, Lease<int>> result) { third = std::move(result); }));
  io.run();
  REQUIRE(third);
  CHECK(!std::get<0>(*third));
  CHECK(*std::get<1>(*third) == 1);
}

#if defined(RESPOOL_TEST_COROUTINES)
TEST_CASE("async_acquire: use_awaitable in a coroutine", "[async][coroutine]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  int first = 0;
  bool timed_out = false;
  error_code tuple_ec;
  std::exception_ptr failure;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        Lease<int> lease = co_await pool.async_acquire(asio::use_awaitable);
        first = *lease;
        try {
          co_await pool.async_acquire(10ms, asio::use_awaitable);
        } catch (const boost::system::system_error& e) {
          timed_out = e.code() == errc::acquire_timeout;
        }
        auto [ec, none] = co_await pool.async_acquire(0s, asio::as_tuple(asio::use_awaitable));
        tuple_ec = ec;
        lease.release();
        Lease<int> again = co_await pool.async_acquire(1s, asio::use_awaitable);
        first += 10 * *again;
      },
      [&](std::exception_ptr e) { failure = e; });
  io.run();
  CHECK_FALSE(failure);
  CHECK(first == 11);
  CHECK(timed_out);
  CHECK(tuple_ec == errc::limit_exceeded);
  check_consistent(pool, t);
}
#endif

// ----- errors: timeout, zero timeout, closed, factory -----------------------------

TEST_CASE("async_acquire: an expired timeout completes with acquire_timeout, pool consistent", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  Outcome out;
  const auto start = Clock::now();
  Clock::time_point finished;
  pool.async_acquire(25ms, asio::bind_executor(io, [&](error_code ec, Lease<int> lease) {
                       finished = Clock::now();
                       record(out)(ec, std::move(lease));
                     }));
  CHECK(pool.stats().waiting == 1);
  io.run();
  REQUIRE(out.done);
  CHECK(out.ec == errc::acquire_timeout);
  CHECK_FALSE(out.lease);
  CHECK(finished - start >= 25ms);
  PoolStats st = pool.stats();
  CHECK(st.waiting == 0);
  CHECK(st.timeouts == 1);
  CHECK(st.in_use == 1);
  // The expired operation is out of the queue: a release goes idle, a later acquire works.
  held.release();
  CHECK(pool.stats().idle == 1);
  io.restart();
  Outcome later;
  pool.async_acquire(1s, asio::bind_executor(io, record(later)));
  io.run();
  REQUIRE(later.done);
  CHECK(!later.ec);
  CHECK(*later.lease == 1);
  later.lease.release();
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: a zero timeout completes with limit_exceeded", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  Outcome out;
  pool.async_acquire(0s, asio::bind_executor(io, record(out)));
  CHECK(pool.stats().waiting == 0);  // never queued
  CHECK_FALSE(out.done);             // and still not inline
  io.run();
  REQUIRE(out.done);
  CHECK(out.ec == errc::limit_exceeded);
  CHECK(out.ec != errc::acquire_timeout);
  CHECK(pool.stats().timeouts == 1);
  // With room, a zero timeout still succeeds.
  held.release();
  io.restart();
  Outcome ok;
  pool.async_acquire(0s, asio::bind_executor(io, record(ok)));
  io.run();
  CHECK(!ok.ec);
  CHECK(*ok.lease == 1);
}

TEST_CASE("async_acquire: error codes compare equal to respool::errc", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  Outcome timeout, refused;
  pool.async_acquire(1ms, asio::bind_executor(io, record(timeout)));
  pool.async_acquire(0s, asio::bind_executor(io, record(refused)));
  io.run();
  REQUIRE(timeout.done);
  REQUIRE(refused.done);
  CHECK(timeout.ec == respool::errc::acquire_timeout);
  CHECK(refused.ec == respool::errc::limit_exceeded);
  CHECK(timeout.ec != respool::errc::pool_closed);
  // As std::error_code: the respool category, and the limit_exceeded condition covers a timeout.
  const std::error_code std_timeout = timeout.ec;
  CHECK(std_timeout == respool::errc::acquire_timeout);
  CHECK(std_timeout.category() == respool::error_category());
  CHECK(std_timeout == respool::make_error_condition(errc::limit_exceeded));
  CHECK(static_cast<std::error_code>(refused.ec) == respool::make_error_condition(errc::limit_exceeded));
  CHECK(timeout.ec.message() == respool::make_error_code(errc::acquire_timeout).message());
}

TEST_CASE("async_acquire: closing the pool completes a waiting operation with pool_closed", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  Outcome untimed, timed;
  pool.async_acquire(asio::bind_executor(io, record(untimed)));
  pool.async_acquire(1h, asio::bind_executor(io, record(timed)));
  CHECK(pool.stats().waiting == 2);
  pool.close();
  io.run();  // would hang if the 1h timer were left running
  REQUIRE(untimed.done);
  REQUIRE(timed.done);
  CHECK(untimed.ec == errc::pool_closed);
  CHECK(timed.ec == errc::pool_closed);
  CHECK(pool.stats().waiting == 0);
  // An operation started on a closed pool completes with pool_closed too.
  io.restart();
  Outcome late;
  pool.async_acquire(asio::bind_executor(io, record(late)));
  io.run();
  CHECK(late.ec == errc::pool_closed);
  held.release();
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: destroying the pool completes a waiting operation with pool_closed", "[async]") {
  Tracker t;
  auto pool = std::make_unique<Resource<int>>(t.options(1));
  asio::io_context io;
  auto held = pool->acquire();
  Outcome out;
  pool->async_acquire(1h, asio::bind_executor(io, record(out)));
  pool.reset();
  io.run();
  REQUIRE(out.done);
  CHECK(out.ec == errc::pool_closed);
  held.release();  // closes it: the pool is gone
  CHECK(t.closed == 1);
}

TEST_CASE("async_acquire: a throwing factory completes with an error code and frees the slot", "[async]") {
  Tracker t;
  std::atomic<int> mode{0};  // 0 = work, 1 = throw a non-system error, 2 = throw a system_error
  auto o = t.options(1);
  o.create = [&] {
    if (mode == 1) throw factory_error();
    if (mode == 2) throw std::system_error(std::make_error_code(std::errc::connection_refused), "refused");
    return ++t.created;
  };
  Resource<int> pool(o);
  asio::io_context io;

  mode = 1;
  Outcome first;
  pool.async_acquire(asio::bind_executor(io, record(first)));
  io.run();
  REQUIRE(first.done);
  CHECK(first.ec == errc::resource_creation_failed);
  CHECK_FALSE(first.lease);
  CHECK(pool.stats().in_use == 0);

  mode = 2;
  io.restart();
  Outcome second;
  pool.async_acquire(1s, asio::bind_executor(io, record(second)));
  io.run();
  REQUIRE(second.done);
  CHECK(static_cast<std::error_code>(second.ec) == std::errc::connection_refused);
  CHECK(pool.stats().in_use == 0);

  SECTION("the slot was freed: a later acquire works without waiting") {
    mode = 0;
    CHECK(*pool.acquire(0s) == 1);
  }
  SECTION("also when the factory runs for a woken waiter") {
    mode = 0;
    auto held = pool.acquire();
    io.restart();
    Outcome woken;
    pool.async_acquire(asio::bind_executor(io, record(woken)));
    CHECK(pool.stats().waiting == 1);
    mode = 1;
    held.discard();  // capacity to the waiter, whose factory throws
    io.run();
    REQUIRE(woken.done);
    CHECK(woken.ec == errc::resource_creation_failed);
    mode = 0;
    CHECK(*pool.acquire(0s) == 2);
  }
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: a throwing prepare hook completes with an error code and frees the slot",
          "[async]") {
  Tracker t;
  std::atomic<bool> fail{true};
  auto o = t.options(1);
  o.prepare = [&](int&) {
    if (fail) throw std::system_error(respool::make_error_code(errc::connection_lost), "lost");
  };
  Resource<int> pool(o);
  asio::io_context io;
  Outcome out;
  pool.async_acquire(asio::bind_executor(io, record(out)));
  io.run();
  REQUIRE(out.done);
  CHECK(out.ec == errc::connection_lost);
  fail = false;
  CHECK(*pool.acquire(0s) == 1);
  check_consistent(pool, t);
}

// ----- cancellation ----------------------------------------------------------------

TEST_CASE("async_acquire: terminal cancellation of a queued operation", "[async][cancel]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  asio::cancellation_signal signal;
  Outcome out;
  SECTION("untimed") {
    pool.async_acquire(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, record(out))));
  }
  SECTION("with a timeout") {
    pool.async_acquire(1h, asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, record(out))));
  }
  CHECK(pool.stats().waiting == 1);
  signal.emit(asio::cancellation_type::terminal);  // io is not running: no concurrent access to the slot
  io.run();
  REQUIRE(out.done);
  CHECK(out.ec == asio::error::operation_aborted);
  CHECK_FALSE(out.lease);
  PoolStats st = pool.stats();
  CHECK(st.waiting == 0);
  CHECK(st.timeouts == 0);
  // Consistent: the release goes idle, not to the cancelled operation.
  held.release();
  CHECK(pool.stats().idle == 1);
  CHECK(*pool.acquire(0s) == 1);
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: cancellation emitted from a handler on the io thread", "[async][cancel]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  asio::cancellation_signal signal;
  Outcome cancelled, next;
  pool.async_acquire(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, record(cancelled))));
  pool.async_acquire(asio::bind_executor(io, record(next)));
  CHECK(pool.stats().waiting == 2);
  asio::post(io, [&] {
    signal.emit(asio::cancellation_type::terminal);
    held.release();  // goes to the next waiter in line, the cancelled one is gone
  });
  io.run();
  CHECK(cancelled.ec == asio::error::operation_aborted);
  REQUIRE(next.done);
  CHECK(!next.ec);
  CHECK(*next.lease == 1);
}

TEST_CASE("async_acquire: cancelling after the operation was served has no effect", "[async][cancel]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  asio::cancellation_signal signal;
  Outcome out;
  pool.async_acquire(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, record(out))));
  held.release();                                  // served (completion posted)
  signal.emit(asio::cancellation_type::terminal);  // too late
  io.run();
  REQUIRE(out.done);
  CHECK(!out.ec);
  CHECK(*out.lease == 1);
  out.lease.release();
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: a cancelled operation never served leaves nothing behind", "[async][cancel]") {
  Tracker t;
  Resource<int> pool(t.options(2));
  asio::io_context io;
  std::vector<Lease<int>> held;
  held.push_back(pool.acquire());
  held.push_back(pool.acquire());
  std::vector<std::unique_ptr<asio::cancellation_signal>> signals;
  std::vector<Outcome> outs(10);
  for (auto& out : outs) {
    signals.push_back(std::make_unique<asio::cancellation_signal>());
    pool.async_acquire(
        asio::bind_cancellation_slot(signals.back()->slot(), asio::bind_executor(io, record(out))));
  }
  CHECK(pool.stats().waiting == 10);
  for (std::size_t i = 0; i < signals.size(); i += 2) signals[i]->emit(asio::cancellation_type::terminal);
  CHECK(pool.stats().waiting == 5);
  held.clear();  // two releases: to the 2nd and 4th operations
  io.poll();
  int served = 0, aborted = 0;
  for (auto& out : outs) {
    if (!out.done) continue;
    if (out.ec == asio::error::operation_aborted) ++aborted;
    if (!out.ec) ++served;
  }
  CHECK(aborted == 5);
  CHECK(served == 2);
  CHECK(!outs[1].ec);
  CHECK(outs[1].lease);
  CHECK(outs[3].lease);
  for (auto& out : outs) out.lease.release();  // 2 releases: to the 6th and 8th
  io.poll();
  CHECK(outs[5].lease);
  CHECK(outs[7].lease);
  for (auto& out : outs) out.lease.release();  // to the 10th, then idle
  io.run();
  CHECK(outs[9].lease);
  for (auto& out : outs) out.lease.release();
  check_consistent(pool, t);
  CHECK(pool.stats().idle == 2);
}

// ----- one FIFO queue for sync and async --------------------------------------------

TEST_CASE("async_acquire: sync and async waiters share one FIFO queue", "[async][fifo]") {
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  std::mutex mutex;
  std::vector<std::string> order;
  auto note = [&](const std::string& who) {
    std::lock_guard<std::mutex> lock(mutex);
    order.push_back(who);
  };
  std::promise<void> async_done;
  auto async_finished = async_done.get_future();
  auto held = pool.acquire();

  SECTION("sync first") {
    auto sync_waiter = std::async(std::launch::async, [&] {
      auto lease = pool.acquire();
      note("sync");
    });
    REQUIRE(eventually([&] { return pool.stats().waiting == 1; }));
    pool.async_acquire(asio::bind_executor(io, [&](error_code ec, Lease<int> lease) {
      note(ec ? "async failed" : "async");
      lease.release();
      async_done.set_value();
    }));
    CHECK(pool.stats().waiting == 2);
    held.release();  // to the sync waiter, which then hands it to the async one
    REQUIRE(sync_waiter.wait_for(60s) == std::future_status::ready);
    REQUIRE(async_finished.wait_for(60s) == std::future_status::ready);
    CHECK(order == std::vector<std::string>{"sync", "async"});
  }
  SECTION("async first") {
    std::promise<void> may_release;
    auto release_gate = may_release.get_future().share();
    pool.async_acquire(asio::bind_executor(io, [&, release_gate](error_code ec, Lease<int> lease) {
      note(ec ? "async failed" : "async");
      // Keep it until the sync waiter is surely queued behind us, then hand it on.
      std::thread([lease = std::move(lease), release_gate, &async_done]() mutable {
        release_gate.wait();
        lease.release();
        async_done.set_value();
      }).detach();
    }));
    CHECK(pool.stats().waiting == 1);
    auto sync_waiter = std::async(std::launch::async, [&] {
      auto lease = pool.acquire();
      note("sync");
    });
    REQUIRE(eventually([&] { return pool.stats().waiting == 2; }));
    held.release();
    may_release.set_value();
    REQUIRE(async_finished.wait_for(60s) == std::future_status::ready);
    REQUIRE(sync_waiter.wait_for(60s) == std::future_status::ready);
    CHECK(order == std::vector<std::string>{"async", "sync"});
  }
  work.reset();
  runner.join();
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: many operations on a two-thread io_context", "[async]") {
  Tracker t;
  Resource<int> pool(t.options(3));
  asio::io_context io;
  constexpr int n = 200;
  std::atomic<int> completed{0};
  std::atomic<int> in_use{0};
  std::atomic<int> max_in_use{0};
  std::atomic<int> errors{0};
  for (int i = 0; i < n; ++i) {
    pool.async_acquire(asio::bind_executor(io, [&](error_code ec, Lease<int> lease) {
      if (ec || !lease) ++errors;
      const int now = ++in_use;
      int seen = max_in_use.load();
      while (now > seen && !max_in_use.compare_exchange_weak(seen, now)) {
      }
      --in_use;
      lease.release();
      ++completed;
    }));
  }
  std::thread a([&] { io.run(); });
  std::thread b([&] { io.run(); });
  a.join();
  b.join();
  CHECK(completed == n);
  CHECK(errors == 0);
  CHECK(max_in_use <= 3);
  CHECK(t.created <= 3);
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: an operation whose io_context dies before completing gives its grant back",
          "[async]") {
  Tracker t;
  Resource<int> pool(t.options(1, 1));
  bool ran = false;
  {
    asio::io_context io;
    pool.async_acquire(asio::bind_executor(io, [&](error_code, Lease<int>) { ran = true; }));
    CHECK(pool.stats().in_use == 1);  // granted, completion posted, never run
  }
  CHECK_FALSE(ran);
  const PoolStats st = pool.stats();
  CHECK(st.in_use == 0);
  CHECK(st.idle == 1);
  CHECK(*pool.acquire(0s) == 1);
  SECTION("also a creation right") {
    auto held = pool.acquire();
    pool.resize(2);
    {
      asio::io_context io;
      pool.async_acquire(asio::bind_executor(io, [&](error_code, Lease<int>) { ran = true; }));
      CHECK(pool.stats().in_use == 2);  // a slot reserved for it to create in
    }
    CHECK_FALSE(ran);
    CHECK(pool.stats().in_use == 1);
    CHECK(t.created == 1);
  }
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: the cancellation signal may die with the handler", "[async][cancel]") {
  // Asio lets a signal live only until its operation's handler runs (a
  // coroutine frame owning the signal, for one): the operation must not touch
  // the slot after that.
  Tracker t;
  Resource<int> pool(t.options(1));
  asio::io_context io;
  auto held = pool.acquire();
  bool served = false, aborted = false;
  {
    auto signal = std::make_unique<asio::cancellation_signal>();
    auto slot = signal->slot();
    pool.async_acquire(asio::bind_cancellation_slot(
        slot,
        asio::bind_executor(io, [&, signal = std::move(signal)](error_code ec, Lease<int> lease) mutable {
          served = !ec && lease;
          signal.reset();
        })));
  }
  {
    auto signal = std::make_unique<asio::cancellation_signal>();
    auto* raw = signal.get();
    pool.async_acquire(asio::bind_cancellation_slot(
        raw->slot(),
        asio::bind_executor(io, [&, signal = std::move(signal)](error_code ec, Lease<int>) mutable {
          aborted = ec == asio::error::operation_aborted;
          signal.reset();
        })));
    raw->emit(asio::cancellation_type::terminal);
  }
  held.release();
  io.run();
  CHECK(served);
  CHECK(aborted);
  check_consistent(pool, t);
}

TEST_CASE("async_acquire: a handler may destroy the pool while the op's expired timer is still queued",
          "[async]") {
  // Regression: the timer handler of a served operation used to call into
  // the pool core after complete() had let go of it.
  asio::io_context io;
  auto pool = std::make_unique<Resource<int>>(1, [] { return 42; });
  auto held = pool->acquire();
  bool served = false;
  pool->async_acquire(std::chrono::nanoseconds(1),  // expires before io.run(): its handler is queued too
                      asio::bind_executor(io, [&](error_code ec, Lease<int> lease) {
                        served = !ec && lease;
                        lease.release();
                        pool.reset();  // the user is done with the pool
                      }));
  held.release();  // serves the queued operation: complete() is posted
  io.run();
  CHECK(pool == nullptr);
}
