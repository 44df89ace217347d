// The peer pools the benchmarks compare respool with (core_bench.cpp,
// contended_bench.cpp): one definition each, so that both benchmarks measure
// the very same code.
//
//   naive_pool      std::mutex + std::condition_variable + std::deque<int>:
//                   acquire waits on the cv while the deque is empty; release
//                   pushes, unlocks and notify_one()s (as a careful textbook
//                   pool does). Barging: a releasing thread may take the value
//                   straight back.
//   fair_fifo_pool  the simplest fair pool: a queue of waiters, each with its
//                   own condition_variable; release hands the value to the
//                   oldest waiter.
//   poco_pool       Poco::ObjectPool<int> (capacity = peak capacity = limit),
//                   pre-warmed by borrowing and returning every object once.
//
// Each holds `limit` values (0 .. limit-1), all idle at the start.
#pragma once

#include <Poco/ObjectPool.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>

namespace respool_bench {

struct naive_pool {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<int> idle;

  explicit naive_pool(int limit) {
    for (int i = 0; i < limit; ++i) idle.push_back(i);
  }
  int acquire() {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [this] { return !idle.empty(); });
    int value = idle.back();
    idle.pop_back();
    return value;
  }
  void release(int value) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      idle.push_back(value);
    }
    cv.notify_one();
  }
};

struct fair_fifo_pool {
  struct waiter {
    std::condition_variable cv;
    int value = -1;
  };
  std::mutex mutex;
  std::deque<int> idle;
  std::deque<waiter*> waiters;

  explicit fair_fifo_pool(int limit) {
    for (int i = 0; i < limit; ++i) idle.push_back(i);
  }
  int acquire() {
    std::unique_lock<std::mutex> lock(mutex);
    if (!idle.empty() && waiters.empty()) {
      int value = idle.back();
      idle.pop_back();
      return value;
    }
    waiter w;
    waiters.push_back(&w);
    w.cv.wait(lock, [&] { return w.value >= 0; });
    return w.value;
  }
  void release(int value) {
    std::lock_guard<std::mutex> lock(mutex);
    if (waiters.empty()) {
      idle.push_back(value);
      return;
    }
    waiter* w = waiters.front();
    waiters.pop_front();
    w->value = value;
    w->cv.notify_one();
  }
};

struct poco_pool {
  Poco::ObjectPool<int> pool;

  explicit poco_pool(int limit) : pool(static_cast<std::size_t>(limit), static_cast<std::size_t>(limit)) {
    std::vector<int*> warm;
    for (int i = 0; i < limit; ++i) warm.push_back(pool.borrowObject());
    for (int* p : warm) pool.returnObject(p);
  }
};

}  // namespace respool_bench
