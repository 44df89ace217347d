// The production policies through the process-wide groups
// (pools::set_connection_policy / set_producer_policy) and the connection
// pools' exhausted-error message, on memory://.

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "respool/pools.hpp"

using namespace respool;
using namespace std::chrono_literals;

namespace {
struct fresh_pools {
  fresh_pools() {
    pools::reset();
    pools::set_limit(200, true);
    pools::set_connection_policy({});
    pools::set_producer_policy({});
  }
  ~fresh_pools() {
    pools::set_connection_policy({});
    pools::set_producer_policy({});
    pools::reset();
    pools::set_limit(200, true);
  }
};
}  // namespace

TEST_CASE("pools: set_connection_policy reaches the pools there and the pools made later",
          "[pools][policy]") {
  fresh_pools guard;
  ConnectionPool& before = pools::connections["memory://policy-before/"];
  PoolPolicy policy;
  policy.idle_timeout = 5min;
  policy.min_idle = 1;
  pools::set_connection_policy(policy);
  CHECK(before.policy().idle_timeout == 5min);
  ConnectionPool& after = pools::connections["memory://policy-after/"];
  CHECK(after.policy().idle_timeout == 5min);
  CHECK(after.maintain().created == 1);
  // Producers are separate.
  CHECK(pools::producers["memory://policy-after/"].policy().idle_timeout == 0s);
  PoolPolicy producer_policy;
  producer_policy.leak_threshold = 1min;
  pools::set_producer_policy(producer_policy);
  CHECK(pools::producers["memory://policy-after/"].policy().leak_threshold == 1min);
  CHECK(pools::producers["memory://policy-new/"].policy().leak_threshold == 1min);
}

TEST_CASE("pools: an exhausted global connection pool names its broker, password masked", "[pools][errors]") {
  fresh_pools guard;
  pools::set_limit(1);
  ConnectionPool& pool = pools::connections["memory://guest:s3cret@limits/"];
  auto held = pool.acquire();
  try {
    pool.acquire(0s);
    FAIL("no connection_limit_exceeded");
  } catch (const connection_limit_exceeded& e) {
    const std::string what = e.what();
    CHECK(what.find("connection pool limit of 1 exceeded") != std::string::npos);
    CHECK(what.find("memory://guest:**@limits") != std::string::npos);
    CHECK(what.find("1 in use, 0 waiting") != std::string::npos);
    CHECK(what.find("s3cret") == std::string::npos);
    CHECK(e.in_use() == 1);
  }
}
