// respool-test: concurrency
// force_close_all(), pools::reset(), set_limit(n, true) and a forced resize
// close connections that other threads are publishing on (with declare) at
// that very moment. Under TSan this finds any shared state of Connection,
// Producer or the memory transport that the closing thread touches without
// synchronisation; everywhere it checks that every publish either worked or
// failed with a respool::error, and that the pools end consistent.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "respool/respool.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using namespace respool;

namespace {
constexpr int publishes_per_thread = respool_test::sanitized ? 400 : 3000;
}  // namespace

TEST_CASE("close race: closing connections that publishing threads are using", "[close_race]") {
  pools::reset();
  const std::string url = "memory://close-race/";
  std::atomic<int> published{0};
  std::atomic<int> failed{0};
  std::atomic<int> running{0};
  std::vector<std::thread> publishers;
  for (int t = 0; t < 4; ++t) {
    publishers.emplace_back([&, t] {
      ++running;
      PublishOptions options;
      options.exchange = "race-x";
      options.routing_key = "k" + std::to_string(t);
      options.declare = {Exchange{"race-x", "direct"}};
      for (int i = 0; i < publishes_per_thread; ++i) {
        try {
          auto producer = pools::producers[url].acquire(5s);
          producer->publish({{"n", i}}, options);
          ++published;
        } catch (const respool::error&) {
          ++failed;  // closed under our feet, or the pool was reset: a clean error
        }
      }
      --running;
    });
  }
  // The closer does every kind of "close what is in use", until the publishers are done.
  int round = 0;
  while (running.load() > 0 || round < 4) {
    switch (round++ % 4) {
      case 0:
        pools::connections[url].force_close_all();
        break;
      case 1:
        pools::reset();
        break;
      case 2:
        pools::set_limit(3, true);
        break;
      case 3:
        pools::connections[url].resize(2, true);
        pools::set_limit(200);
        break;
    }
    std::this_thread::yield();
  }
  for (auto& p : publishers) p.join();
  CHECK(published.load() + failed.load() == 4 * publishes_per_thread);
  CHECK(published.load() > 0);
  auto st = pools::connections[url].stats();
  CHECK(st.in_use == 0);
  pools::set_limit(200);
  pools::reset();
}

TEST_CASE("close race: Connection::close() from another thread while the owner declares and publishes",
          "[close_race]") {
  Connection connection("memory://close-race-2/");
  std::atomic<bool> stop{false};
  std::thread closer([&] {
    while (!stop.load()) {
      connection.close();
      std::this_thread::yield();
    }
  });
  int ok = 0;
  int errors = 0;
  for (int i = 0; i < publishes_per_thread; ++i) {
    try {
      Producer producer(connection);
      PublishOptions options;
      options.exchange = "race-y";
      options.declare = {Exchange{"race-y", "fanout"}};
      producer.publish({{"n", i}}, options);
      ++ok;
    } catch (const respool::error&) {
      ++errors;
    }
  }
  stop = true;
  closer.join();
  // A publish that finds the connection closed reconnects; one closed
  // half-way fails with a clean error. Nothing else may happen.
  CHECK(ok + errors == publishes_per_thread);
  CHECK(ok > 0);
}
