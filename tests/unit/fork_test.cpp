// Fork safety with real fork(): the child starts with empty pools, never
// touches what it inherited, and the parent keeps working — also when other
// parent threads were inside the pools at the moment of the fork.
//
// Children exit with _exit() and report through their exit status; each arms
// alarm() as a watchdog, so a deadlocked child dies of SIGALRM and the test
// fails instead of hanging.
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <respool/respool.hpp>
#include <thread>
#include <vector>

using namespace respool;

namespace {

// Run `child` in a forked process; returns its exit status (or 128 + signal).
template <class F>
int in_child(F child) {
  pid_t pid = ::fork();
  if (pid < 0) FAIL("fork failed");
  if (pid == 0) {
    ::alarm(20);  // watchdog: a deadlock ends in SIGALRM
    int code = 99;
    try {
      code = child();
    } catch (...) {
      code = 98;
    }
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

struct counted {
  std::atomic<int> created{0};
  std::atomic<int> closed{0};
};

}  // namespace

TEST_CASE("after fork the child's groups are empty and the parent's are intact", "[fork]") {
  pools::reset();
  auto& parent_pool = pools::connections["memory://fork-a/"];
  {
    auto a = parent_pool.acquire();
    auto b = parent_pool.acquire();
    a->connect();
    b->connect();
  }
  REQUIRE(parent_pool.stats().idle == 2);
  REQUIRE(pools::connections.size() == 1);

  int status = in_child([] {
    if (pools::connections.size() != 0) return 1;
    auto& pool = pools::connections["memory://fork-a/"];
    auto st = pool.stats();
    if (st.created != 0 || st.idle != 0) return 2;
    {
      auto conn = pool.acquire();
      PublishOptions options;
      options.routing_key = "nowhere";
      Producer(*conn).publish({{"from", "child"}}, options);
    }
    if (pool.stats().created != 1) return 3;
    auto producer = pools::producers["memory://fork-a/"].acquire();
    producer->publish({{"from", "child"}}, PublishOptions{});
    return 0;
  });
  CHECK(status == 0);

  // The parent still has its pool, its idle connections, and they work.
  CHECK(pools::connections.size() == 1);
  CHECK(&pools::connections["memory://fork-a/"] == &parent_pool);
  CHECK(parent_pool.stats().idle == 2);
  auto conn = parent_pool.acquire();
  CHECK(conn->connected());
  CHECK(parent_pool.stats().created == 2);
}

TEST_CASE("the child never closes or reuses resources inherited from the parent", "[fork]") {
  counted counts;
  Resource<int>::Options options;
  options.limit = 4;
  options.create = [&] { return ++counts.created; };
  options.close = [&](int&) { ++counts.closed; };
  auto pool = std::make_unique<Resource<int>>(options);
  auto held = pool->acquire();  // a lease the forking thread carries into the child
  { auto idle = pool->acquire(); }

  int status = in_child([&] {
    const int created_before = counts.created;
    auto fresh = pool->acquire();  // must be a new resource, not the parent's idle one
    if (*fresh <= created_before) return 1;
    if (pool->stats().in_use != 1) return 2;
    held.release();  // inherited lease: abandoned, not closed
    fresh.release();
    pool->force_close_all();  // closes only the child's own resource
    if (counts.closed != 1) return 3;
    pool.reset();  // destroying the pool closes nothing inherited
    return counts.closed == 1 ? 0 : 4;
  });
  CHECK(status == 0);
  // Parent: untouched.
  CHECK(counts.closed == 0);
  CHECK(pool->stats().in_use == 1);
  CHECK(pool->stats().idle == 1);
  held.release();
  CHECK(pool->stats().idle == 2);
}

TEST_CASE("a Connection inherited by the child is abandoned, not closed", "[fork]") {
  auto broker = transport::memory::broker_for("memory://fork-b/");
  Connection connection("memory://fork-b/");
  connection.connect();
  const auto live_before = broker->stats().live_connections;

  int status = in_child([&] {
    connection.close();  // abandon: the parent's session must survive
    Connection own("memory://fork-b/");
    own.connect();
    return own.connected() ? 0 : 1;
  });
  CHECK(status == 0);
  CHECK(connection.connected());
  CHECK(broker->stats().live_connections == live_before);
}

TEST_CASE("fork in a loop while 4 threads hammer a pool: no deadlock in the child", "[fork][stress]") {
  pools::reset();
  auto& group_pool = pools::connections["memory://fork-c/"];
  Resource<int> local(3, [] { return 7; });
  std::atomic<bool> stop{false};
  std::atomic<long> ops{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (t % 2 == 0) {
          auto lease = local.acquire();
        } else {
          auto lease = pools::connections["memory://fork-c/"].acquire();
        }
        ++ops;
      }
    });
  }
  // Let the hammering start before the first fork.
  while (ops.load() < 1000) std::this_thread::yield();

  int failures = 0;
  for (int i = 0; i < 30; ++i) {
    int status = in_child([&] {
      for (int k = 0; k < 50; ++k) {
        auto a = local.acquire(std::chrono::seconds(5));
        auto b = pools::connections["memory://fork-c/"].acquire(std::chrono::seconds(5));
        auto c = pools::producers["memory://fork-c/"].acquire(std::chrono::seconds(5));
      }
      return local.stats().in_use == 0 ? 0 : 1;
    });
    if (status != 0) {
      ++failures;
      UNSCOPED_INFO("child " << i << " exited with " << status);
    }
  }
  stop = true;
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  // The parent's pools are consistent.
  CHECK(local.stats().in_use == 0);
  CHECK(group_pool.stats().in_use == 0);
  CHECK(local.stats().created <= 3);
}
