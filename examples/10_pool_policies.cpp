// Production policies: idle timeout, max lifetime, validation bypass, leak detection, exhausted errors.
#include <chrono>
#include <cstdio>
#include <respool/respool.hpp>
#include <string>

using namespace std::chrono_literals;

// A simulated clock, so that the example shows an hour of a pool's life at
// once (tests inject one the same way; real pools leave Options::clock empty).
std::chrono::steady_clock::time_point simulated = std::chrono::steady_clock::now();

int main() {
  int opened = 0;
  // [policies]
  respool::Resource<std::string>::Options options;
  options.limit = 2;
  options.name = "sessions";
  options.create = [&opened] { return "session-" + std::to_string(++opened); };
  options.close = [](std::string& s) { std::printf("  closed %s\n", s.c_str()); };
  options.validate = [](std::string&) { return true; };  // e.g. a ping
  options.policy.idle_timeout = 10min;       // close what sat idle longer (the server would drop it anyway)
  options.policy.max_lifetime = 1h;          // retire every resource after an hour, busy or not
  options.policy.lifetime_jitter = 0.025;    // minus up to 2.5 %, so they do not all expire at once
  options.policy.validation_bypass = 500ms;  // no ping for a resource used in the last 500 ms
  options.policy.leak_threshold = 5min;      // a lease held longer is a leak: report it
  options.policy.on_leak = [](const respool::LeakInfo& leak) {
    std::printf("  leak: a lease held for %lld s\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(leak.held).count()));
  };
  // [policies]
  options.clock = [] { return simulated; };
  respool::Resource<std::string> pool(std::move(options));

  std::printf("idle timeout:\n");
  pool.acquire().release();  // session-1 goes idle
  simulated += 11min;
  std::printf("  after 11 idle minutes we get %s\n", pool.acquire()->c_str());

  std::printf("max lifetime (a busy resource is retired when given back):\n");
  for (int minute = 0; minute < 70; ++minute) {
    auto lease = pool.acquire();
    simulated += 1min;  // in use all the time, never idle
  }
  std::printf("  expired so far: %zu\n", pool.stats().expired);

  std::printf("leak detection:\n");
  auto forgotten = pool.acquire();
  simulated += 6min;
  pool.maintain();  // the reaper (respool/async.hpp) runs this periodically

  std::printf("an exhausted pool explains itself:\n");
  auto other = pool.acquire();
  try {
    pool.acquire(0s);
  } catch (const respool::limit_exceeded& e) {
    std::printf("  %s\n", e.what());
  }
  const auto stats = pool.stats();
  std::printf("stats: created %zu, closed %zu, expired %zu, leaks %zu, peak in use %zu\n", stats.created,
              stats.closed, stats.expired, stats.leaks, stats.peak_in_use);
}
