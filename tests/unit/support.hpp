// Helpers shared by the unit tests (and the integration tests that include it).
#pragma once

#include <chrono>
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

}  // namespace respool_test
