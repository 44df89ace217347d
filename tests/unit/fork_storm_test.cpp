// respool-test: concurrency
// A fork storm: hundreds of fork() calls while parent threads work in every
// part of the library — new Connections (the transport registry), new pool
// keys (the group's insert path), acquire/discard (connections created and
// closed), producer publish with declare (the memory brokers' locks), async
// acquire on a running io_context, URL parsing, stats and set_limit (the
// group registry), new groups and the policy setters. Every child must acquire, publish, make a new pool key
// and exit within a watchdog; the parent's leases stay intact.
//
// RESPOOL_FORK_ROUNDS sets the number of forks (default 300; 60 under a
// sanitizer). Children arm
// alarm() and exit with _exit(); a deadlocked child dies of SIGALRM and the
// test fails instead of hanging.
#include <poll.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "respool/async.hpp"
#include "respool/respool.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using namespace respool;

namespace {

constexpr int default_rounds =
    respool_test::sanitized ? 60 : 300;  // a sanitized fork copies a large shadow memory

int fork_rounds() {
  const char* env = std::getenv("RESPOOL_FORK_ROUNDS");
  return env != nullptr ? std::atoi(env) : default_rounds;
}

// The child's work: must finish within the watchdog. Returns its exit code.
int child_work(int round) {
  // A brand-new key (the group's insert path and the transport registry).
  const std::string key = "memory://storm-child-" + std::to_string(round) + "/";
  {
    auto lease = pools::connections[key].acquire(5s);
    lease->connect();
  }
  // The shared broker the parent's threads publish to (its mutex was busy).
  auto producer = pools::producers["memory://storm/"].acquire(5s);
  PublishOptions options;
  options.exchange = "storm-x";
  options.routing_key = "child";
  options.declare = {Exchange{"storm-x", "direct"}};
  producer->publish({{"child", round}}, options);
  producer.release();
  Connection parsed(ConnectionParams::parse("memory://guest:secret@storm-parse:1234/v"));
  pools::set_limit(pools::get_limit());
  if (pools::connections[key].stats().created != 1) return 3;
  return 0;
}

// Under a sanitizer the parent's threads park between two library calls at
// each fork, and the io_context part does not run (see park_at_fork in
// support.hpp): the children still do all their work under the sanitizer's
// checks, while the plain builds keep forks landing anywhere in the library.
using respool_test::fork_parking;
using respool_test::park_at_fork;

// The threads of a stuck process, as gdb prints them (what a CI log needs
// to tell a deadlock in the library from one elsewhere); "" without gdb.
std::string stacks_of(pid_t pid) {
  const std::string command = "gdb -p " + std::to_string(pid) +
                              " -batch -nx -ex 'thread apply all bt 30' 2>/dev/null | grep -E '^(#|Thread)'";
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char line[1024];
    while (std::fgets(line, sizeof line, pipe) != nullptr && out.size() < 64 * 1024) out += line;
    ::pclose(pipe);
  }
  return out;
}

// Waits for child `pid` to end, at most `limit` (a pidfd: no polling). A
// child still running then is stuck: its stacks go to `stacks` and it is
// killed. Returns waitpid's status.
int wait_child(pid_t pid, std::chrono::seconds limit, std::string& stacks) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int ready;
    while ((ready = ::poll(&p, 1, static_cast<int>(limit.count() * 1000))) < 0 && errno == EINTR) {
    }
    ::close(pidfd);
    if (ready == 0) {
      stacks = stacks_of(pid);
      ::kill(pid, SIGKILL);
    }
  }  // else (a kernel before 5.3): the child's alarm() ends it
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

TEST_CASE("fork storm: every child works while parent threads are anywhere in the library", "[fork]") {
  pools::reset();
  const int rounds = fork_rounds();
  fork_parking gate;
  std::atomic<long> work{0};

  // A lease the parent holds across every fork.
  auto& parent_pool = pools::connections["memory://storm-parent/"];
  auto parent_lease = parent_pool.acquire();
  parent_lease->connect();

  std::vector<std::thread> threads;
  // 1. New Connections and URL parsing.
  threads.emplace_back([&] {
    while (gate.running()) {
      Connection c("memory://storm-conn/");
      c.connect();
      (void)ConnectionParams::parse("amqp://user:pw@host:5672/vhost?heartbeat=10").as_uri();
      ++work;
    }
  });
  // 2. New pool keys, acquire/discard (connections created and closed).
  threads.emplace_back([&] {
    for (unsigned n = 0; gate.running(); ++n) {
      auto& pool = pools::connections["memory://storm-key-" + std::to_string(n % 256) + "/"];
      auto lease = pool.acquire(1s);
      lease->connect();
      lease.discard();
      ++work;
    }
  });
  // 3. Producer publish with declare.
  threads.emplace_back([&] {
    PublishOptions options;
    options.exchange = "storm-x";
    options.routing_key = "parent";
    options.declare = {Exchange{"storm-x", "direct"}};
    while (gate.running()) {
      try {
        auto producer = pools::producers["memory://storm/"].acquire(1s);
        producer->publish({{"parent", 1}}, options);
      } catch (const respool::error&) {
        // set_limit below may close one under our feet
      }
      ++work;
    }
  });
  // 4. Async acquire on a running io_context (two io threads; not under a
  // sanitizer, whose io threads could not be parked at a fork).
  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::vector<std::thread> io_threads;
  if (!park_at_fork)
    for (int i = 0; i < 2; ++i) io_threads.emplace_back([&] { io.run(); });
  Resource<int> ints(2, [] { return 1; });
  if (!park_at_fork)
    threads.emplace_back([&] {
      std::atomic<int> outstanding{0};
      while (gate.running()) {
        if (outstanding.load() < 8) {
          ++outstanding;
          ints.async_acquire(1ms, boost::asio::bind_executor(
                                      io, [&](boost::system::error_code, Lease<int>) { --outstanding; }));
          ++outstanding;
          pools::connections["memory://storm-async/"].async_acquire(
              10ms, boost::asio::bind_executor(io, [&](boost::system::error_code, Lease<Connection> c) {
                if (c) c->connect();
                --outstanding;
              }));
        }
        std::this_thread::yield();
        ++work;
      }
      while (outstanding.load() != 0) std::this_thread::yield();
    });
  // 5. stats, set_limit (the group registry, every group's resize).
  threads.emplace_back([&] {
    for (unsigned n = 0; gate.running(); ++n) {
      (void)pools::connections["memory://storm/"].stats();
      (void)pools::connections.size();
      pools::set_limit(n % 2 ? 200 : 199);
      ++work;
    }
  });

  // 6. New groups and their first keys (the factories read the global
  // policies under a process-wide lock), and the policy setters.
  threads.emplace_back([&] {
    while (gate.running()) {
      pools::Connections local(2);
      auto lease = local["memory://storm-local/"].acquire(1s);
      lease->connect();
      pools::set_producer_policy(PoolPolicy{});
      ++work;
    }
  });

  int failures = 0;
  // Reported with the final CHECK (an UNSCOPED_INFO would go with the next REQUIRE).
  std::string failed_rounds;
  for (int round = 0; round < rounds; ++round) {
    // Let the threads get going between forks, so that forks land everywhere.
    const long before = work.load();
    while (work.load() < before + 20) std::this_thread::yield();
    gate.park(threads.size());
    const pid_t pid = ::fork();
    if (pid != 0) gate.resume();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::alarm(20);  // watchdog: a deadlock ends in SIGALRM (the parent gives up after 15 s)
      int code = 99;
      try {
        code = child_work(round);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "fork storm child %d: %s\n", round, e.what());
        code = 98;
      } catch (...) {
        code = 97;
      }
      ::_exit(code);
    }
    std::string stacks;
    const int status = wait_child(pid, 15s, stacks);
    const int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    if (code != 0) {
      ++failures;
      failed_rounds +=
          "round " + std::to_string(round) + ": child exited with " + std::to_string(code) +
          (code == 128 + SIGALRM || code == 128 + SIGKILL ? " (stuck: killed by the watchdog)" : "") + "\n" +
          stacks;
    }
  }
  gate.stop = true;
  for (auto& t : threads) t.join();
  guard.reset();
  for (auto& t : io_threads) t.join();
  INFO(failed_rounds);
  CHECK(failures == 0);

  // The parent's lease is intact and its pools keep working.
  CHECK(parent_lease->connected());
  CHECK(parent_pool.stats().in_use == 1);
  parent_lease.release();
  CHECK(parent_pool.stats().idle == 1);
  pools::set_limit(200);
  pools::reset();
}
