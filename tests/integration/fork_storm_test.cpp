// The fork storm on real brokers: forks while parent threads make new
// redis:// and amqp:// connections (the transport registry, hiredis and
// rabbitmq-c sessions), publish through pools::producers with declare, and
// reset pools under each other. Every child must connect to both brokers,
// publish, make a new pool key and exit within a watchdog; the parent's
// connections keep working (a child never writes to an inherited socket).
//
// RESPOOL_FORK_ROUNDS sets the number of forks (default 100). Reads
// RESPOOL_REDIS_URL and RESPOOL_AMQP_URL (tests/run).
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <respool/respool.hpp>
#include <respool/transport/amqp.hpp>
#include <respool/transport/redis.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../unit/support.hpp"
#include "pools_support.hpp"

using namespace std::chrono_literals;
using namespace respool;

namespace {

int fork_rounds() {
  const char* env = std::getenv("RESPOOL_FORK_ROUNDS");
  return env != nullptr ? std::atoi(env) : 100;
}

PublishOptions declared_options(const std::string& key) {
  PublishOptions options;
  options.exchange = "respool-fork-storm";
  options.routing_key = key;
  options.declare = {Exchange{"respool-fork-storm", "direct", false, true}};
  return options;
}

}  // namespace

TEST_CASE("fork storm on real brokers: children connect and publish while the parent works",
          "[fork][redis][amqp]") {
  const char* redis_c = respool_test::env("RESPOOL_REDIS_URL");
  const char* amqp_c = respool_test::env("RESPOOL_AMQP_URL");
  if (redis_c == nullptr || amqp_c == nullptr) {
    WARN("skipped: RESPOOL_REDIS_URL / RESPOOL_AMQP_URL not set (run tests/run)");
    return;
  }
  const std::string redis_url = redis_c, amqp_url = amqp_c;
  const std::vector<std::string> urls{redis_url, amqp_url};
  pools::reset();

  // Connections the parent holds across every fork (outside the pools, which
  // the threads below force-close).
  auto parent_redis = std::make_unique<Connection>(redis_url);
  auto parent_amqp = std::make_unique<Connection>(amqp_url);
  parent_redis->connect();
  parent_amqp->connect();

  // Under a sanitizer the threads park at each fork (respool_test::park_at_fork).
  respool_test::fork_parking gate;
  std::atomic<long> work{0};
  std::vector<std::thread> threads;
  for (const auto& url : urls) {
    // New connections: registry lookup, connect, publish, close.
    threads.emplace_back([&, url] {
      while (gate.running()) {
        try {
          Connection c(url);
          Producer(c).publish({{"parent", "new"}}, declared_options("new"));
        } catch (const respool::error&) {
        }
        ++work;
      }
    });
    // Pooled producers with declare, new pool keys (a different vhost/db is a new key).
    threads.emplace_back([&, url] {
      while (gate.running()) {
        try {
          auto producer = pools::producers[url].acquire(10s);
          producer->publish({{"parent", "pooled"}}, declared_options("pooled"));
        } catch (const respool::error&) {
          // reset below closes under our feet
        }
        ++work;
      }
    });
  }
  // Resets and limits (the group registry), now and then.
  threads.emplace_back([&] {
    for (unsigned n = 0; gate.running(); ++n) {
      if (n % 50 == 0) pools::connections[redis_url].force_close_all();
      pools::set_limit(n % 2 ? 200 : 199);
      (void)pools::connections.size();
      ++work;
      std::this_thread::yield();
    }
  });

  const int rounds = fork_rounds();
  int failures = 0;
  for (int round = 0; round < rounds; ++round) {
    const long before = work.load();
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (work.load() < before + 5 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    gate.park(threads.size());
    const pid_t pid = ::fork();
    if (pid != 0) gate.resume();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::alarm(30);  // watchdog: a deadlock ends in SIGALRM
      int code = 0;
      try {
        for (const auto& url : urls) {
          auto producer = pools::producers[url].acquire(10s);
          producer->publish({{"child", round}}, declared_options("child"));
          Connection fresh(url);
          fresh.connect();
          if (!fresh.connected()) code = 3;
        }
      } catch (const std::exception&) {
        code = 98;
      }
      ::_exit(code);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
    }
    const int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    if (code != 0) {
      ++failures;
      UNSCOPED_INFO("round " << round << ": child exited with " << code
                             << (code == 128 + SIGALRM ? " (deadlocked: killed by the watchdog)" : ""));
    }
  }
  gate.stop = true;
  for (auto& t : threads) t.join();
  CHECK(failures == 0);

  // The parent's own connections were never touched by a child.
  CHECK(parent_redis->alive());
  CHECK(parent_amqp->alive());
  Producer(*parent_redis).publish({{"parent", "after"}}, declared_options("after"));
  Producer(*parent_amqp).publish({{"parent", "after"}}, declared_options("after"));
  parent_redis.reset();
  parent_amqp.reset();
  pools::set_limit(200);
  pools::reset();
}
