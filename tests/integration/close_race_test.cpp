// respool-test: concurrency
// force_close_all(), pools::reset(), set_limit(n, true) and a forced resize
// close connections that other threads are publishing on (with declare) at
// that moment, on real Redis and RabbitMQ. Built in the sanitizer stages too
// (the concurrency label): under TSan it finds shared state that a closing
// thread touches without synchronisation, in Connection, Producer or the
// transports. Every publish either works or fails with a respool::error;
// the pools end consistent and keep working.
//
// Reads RESPOOL_REDIS_URL and RESPOOL_AMQP_URL (tests/run).
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <respool/respool.hpp>
#include <respool/transport/amqp.hpp>
#include <respool/transport/redis.hpp>
#include <string>
#include <thread>
#include <vector>

#include "pools_support.hpp"

using namespace std::chrono_literals;
using namespace respool;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int publishes_per_thread = 150;
#else
constexpr int publishes_per_thread = 600;
#endif

void close_while_publishing(const std::string& url) {
  pools::reset();
  std::atomic<int> published{0};
  std::atomic<int> failed{0};
  std::atomic<int> running{4};
  std::vector<std::thread> publishers;
  for (int t = 0; t < 4; ++t) {
    publishers.emplace_back([&, t] {
      PublishOptions options;
      options.exchange = "respool-close-race";
      options.routing_key = "k" + std::to_string(t);
      options.declare = {Exchange{"respool-close-race", "direct", false, true}};
      for (int i = 0; i < publishes_per_thread; ++i) {
        try {
          auto producer = pools::producers[url].acquire(10s);
          producer->publish({{"n", i}}, options);
          ++published;
        } catch (const respool::error&) {
          ++failed;  // closed under our feet: a clean error
        }
      }
      --running;
    });
  }
  int round = 0;
  while (running.load() > 0) {
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
    // Let some publishes through between closes (polls, not a sleep: the
    // publishers' progress is the condition).
    const int seen = published.load() + failed.load();
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (running.load() > 0 && published.load() + failed.load() < seen + 8 &&
           std::chrono::steady_clock::now() < give_up)
      std::this_thread::yield();
  }
  for (auto& p : publishers) p.join();
  CHECK(published.load() + failed.load() == 4 * publishes_per_thread);
  CHECK(published.load() > 0);
  pools::set_limit(200);
  CHECK(pools::connections[url].stats().in_use == 0);
  // The pools work afterwards.
  auto producer = pools::producers[url].acquire(10s);
  producer->publish({{"after", true}}, PublishOptions{});
  producer.release();
  pools::reset();
}

}  // namespace

TEST_CASE("close race on redis://: closing connections publishing threads are using", "[close_race][redis]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_REDIS_URL");
  close_while_publishing(url);
}

TEST_CASE("close race on amqp://: closing connections publishing threads are using", "[close_race][amqp]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_AMQP_URL");
  close_while_publishing(url);
}
