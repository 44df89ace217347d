// A redis-server of a test's own (tests/integration): for tests that kill
// their server or read its global statistics, which the shared test server
// (RESPOOL_REDIS_URL, used by the other tests at the same time) cannot give.
#pragma once

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "pools_support.hpp"

namespace respool_test {

// A redis-server of the test's own on a free loopback port (killed by the destructor).
struct own_redis {
  pid_t pid = -1;
  std::uint16_t port = free_port();

  own_redis() {
    pid = ::fork();
    if (pid == 0) {
      const std::string p = std::to_string(port);
      ::execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--logfile", "/dev/null", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Readiness of another process: poll it, bounded.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      redisContext* probe = redisConnect("127.0.0.1", port);
      const bool up = probe != nullptr && probe->err == 0;
      if (probe != nullptr) redisFree(probe);
      if (up) break;
      if (std::chrono::steady_clock::now() > give_up) FAIL("redis-server did not start on port " << port);
      std::this_thread::yield();
    }
  }
  void kill() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~own_redis() { kill(); }
};

}  // namespace respool_test
