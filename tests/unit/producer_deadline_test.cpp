// respool-test: concurrency
// A ProducerPool's acquire keeps the caller's deadline while its connection
// pool is exhausted: zero-wait, timed, try_acquire and async (on a one-thread
// io_context, where a blocking borrow would deadlock the program).

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <optional>
#include <thread>

#include "respool/async.hpp"
#include "respool/respool.hpp"

using namespace std::chrono_literals;
using namespace respool;

TEST_CASE("producer deadline: sync acquires never wait past their timeout for a connection", "[producer]") {
  ConnectionPool connections("memory://producer-deadline/", 1);
  ProducerPool producers(connections, 4);
  auto held = connections.acquire();  // the only connection, held outside the producer pool

  // Zero wait and try_acquire: at once, whatever the connection pool does.
  auto zero = std::async(std::launch::async, [&] {
    try {
      producers.acquire(0s);
      return 0;
    } catch (const connection_limit_exceeded&) {
      return 1;
    }
  });
  REQUIRE(zero.wait_for(60s) == std::future_status::ready);
  CHECK(zero.get() == 1);
  auto tried = std::async(std::launch::async, [&] { return producers.try_acquire().has_value(); });
  REQUIRE(tried.wait_for(60s) == std::future_status::ready);
  CHECK_FALSE(tried.get());

  // A timed wait ends in connection_acquire_timeout (an acquire_timeout too).
  auto timed = std::async(std::launch::async, [&] {
    try {
      producers.acquire(50ms);
      return 0;
    } catch (const acquire_timeout& e) {
      return dynamic_cast<const connection_limit_exceeded*>(&e) != nullptr ? 2 : 1;
    }
  });
  REQUIRE(timed.wait_for(60s) == std::future_status::ready);
  CHECK(timed.get() == 2);

  // Every producer slot came back.
  CHECK(producers.stats().in_use == 0);
  CHECK(connections.stats().in_use == 1);

  // A timed wait that the release serves gets the connection.
  auto served =
      std::async(std::launch::async, [&] { return bool(producers.acquire(60s)->has_connection()); });
  REQUIRE(connections.stats().in_use == 1);
  while (connections.stats().waiting == 0) std::this_thread::yield();
  held.release();
  REQUIRE(served.wait_for(60s) == std::future_status::ready);
  CHECK(served.get());
  CHECK(connections.stats().in_use == 0);
}

TEST_CASE("producer deadline: async acquire on a one-thread io_context waits without blocking it",
          "[producer][async]") {
  boost::asio::io_context io;
  ConnectionPool connections("memory://producer-deadline-async/", 1);
  ProducerPool producers(connections, 2);
  auto held = connections.acquire();

  // A timer on the same (only) io thread releases the connection later: the
  // producer's acquire must wait for it asynchronously.
  boost::asio::steady_timer release_timer(io, 20ms);
  release_timer.async_wait([&](boost::system::error_code) { held.release(); });

  std::optional<boost::system::error_code> zero_ec, timed_ec, waited_ec;
  bool waited_has_connection = false;
  using boost::asio::bind_executor;
  producers.async_acquire(
      0s, bind_executor(io, [&](boost::system::error_code ec, Lease<Producer>) { zero_ec = ec; }));
  producers.async_acquire(
      1ms, bind_executor(io, [&](boost::system::error_code ec, Lease<Producer>) { timed_ec = ec; }));
  producers.async_acquire(60s, bind_executor(io, [&](boost::system::error_code ec, Lease<Producer> p) {
                            waited_ec = ec;
                            waited_has_connection = p && p->has_connection();
                          }));
  const std::size_t ran = io.run_for(60s);
  CHECK(ran > 0);
  REQUIRE(zero_ec);
  CHECK(*zero_ec == errc::connection_limit_exceeded);
  REQUIRE(timed_ec);
  CHECK(*timed_ec == errc::acquire_timeout);
  REQUIRE(waited_ec);
  CHECK_FALSE(*waited_ec);
  CHECK(waited_has_connection);
  CHECK(producers.stats().in_use == 0);
  CHECK(connections.stats().in_use == 0);
}

TEST_CASE("async zero-wait on a full ConnectionPool completes with connection_limit_exceeded", "[async]") {
  boost::asio::io_context io;
  ConnectionPool connections("memory://zero-wait-async/", 1);
  auto held = connections.acquire();
  std::optional<boost::system::error_code> result;
  connections.async_acquire(0s, boost::asio::bind_executor(io, [&](boost::system::error_code ec,
                                                                   Lease<Connection>) { result = ec; }));
  io.run_for(60s);
  REQUIRE(result);
  CHECK(*result == errc::connection_limit_exceeded);
}
