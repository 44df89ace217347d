// Helpers shared by the unit tests (and the integration tests that include it).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <thread>

namespace respool_test {

// True in the ASan and TSan builds, where tests run fewer rounds.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif

// Polls `condition` (another thread's progress) until it holds, for 60 s at
// most; false if it never did. Yields, never sleeps.
template <class Condition>
bool eventually(Condition condition) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

// The sanitizer runtimes of Debian 12 (GCC 12's, clang 14's) are not
// fork-safe: they hold internal locks around fork() only in part, so a child
// forked while another thread is inside the runtime's allocator can spin
// forever on the inherited lock. ASan takes none (google/sanitizers#774,
// fixed by llvm-project#75290 in LLVM 18); under TSan a fork_storm child was
// seen spinning in __tsan::DenseSlabAlloc::Refill's StaticSpinMutex (the
// same kind of hang as google/sanitizers#1400). So in the sanitizer builds
// the fork storms park their threads between two library calls at each
// fork; the plain builds keep forks landing anywhere in the library.
inline constexpr bool park_at_fork = sanitized;

// Stops a fork storm's threads, and parks them at fork() when park_at_fork.
struct fork_parking {
  std::atomic<bool> stop{false};
  std::atomic<bool> pausing{false};
  std::atomic<std::size_t> parked{0};

  // A thread's loop condition: parks it while a fork is being made.
  bool running() {
    if (park_at_fork && pausing.load()) {
      ++parked;
      while (pausing.load()) std::this_thread::yield();
      --parked;
    }
    return !stop.load();
  }
  // Returns once all `threads` are parked (at once, in the plain builds).
  void park(std::size_t threads) {
    if (!park_at_fork) return;
    pausing = true;
    while (parked.load() < threads) std::this_thread::yield();
  }
  void resume() { pausing = false; }
};

}  // namespace respool_test
