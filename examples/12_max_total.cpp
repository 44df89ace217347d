// A cap across keys: set_limit bounds each pool, pools::set_max_total all
// the connections of the process together (at the cap, a new key closes the
// oldest idle connection of another key; with none idle, it waits).
#include <chrono>
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;
  using namespace std::chrono_literals;

  // [max_total]
  pools::set_limit(10);     // per pool (per broker URL)
  pools::set_max_total(2);  // all the pools of pools::connections together (and of pools::producers)
  // [max_total]

  auto a = pools::connections["memory://guest:secret@a/"].acquire();
  { auto b = pools::connections["memory://guest:secret@b/"].acquire(); }  // b's connection is idle now
  auto c = pools::connections["memory://guest:secret@c/"].acquire();      // closes b's idle one
  std::printf("b's pool closed %zu idle connection(s) to make room for c\n",
              pools::connections["memory://guest:secret@b/"].stats().closed);

  int status = 1;
  try {
    pools::connections["memory://guest:secret@d/"].acquire(10ms);  // a and c are in use: nothing to close
  } catch (const connection_acquire_timeout& e) {
    std::printf("d: %s\n", e.what());  // names max_total, the group's and d's counts; no password
    status = e.group_cap() ? 0 : 1;
  }
  pools::set_max_total(0);  // no cap again (the default)
  return status;
}
