// Copyright respool authors. Distributed under the Boost Software License 1.0.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace respool::detail {

// Calls fn(0) ... fn(n - 1), on up to `max_threads` threads (this one
// included), and returns when all are done. Why: closing a connection may
// wait for a stalled broker for up to a transport's close bound; closing many
// at once takes about one bound instead of one per connection. Rethrows the
// first exception fn threw (after every call ran). If no thread can be
// started, this thread does all the work.
template <class F>
void run_in_parallel(std::size_t n, std::size_t max_threads, F&& fn) {
  if (n == 0) return;
  if (n == 1 || max_threads < 2) {
    std::exception_ptr failure;
    for (std::size_t i = 0; i < n; ++i) {
      try {
        fn(i);
      } catch (...) {
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::mutex failure_mutex;
  std::exception_ptr failure;
  auto worker = [&]() noexcept {
    for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) failure = std::current_exception();
      }
    }
  };
  std::vector<std::thread> threads;
  try {
    const std::size_t extra = std::min(n, max_threads) - 1;
    threads.reserve(extra);
    for (std::size_t k = 0; k < extra; ++k) threads.emplace_back(worker);
  } catch (...) {
    // Out of threads (or memory): the ones started and this one do the rest.
  }
  worker();
  for (auto& t : threads) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace respool::detail
