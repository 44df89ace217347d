// A pooled connection the Redis server closed for idleness (its own
// `timeout` setting) is never handed out: the pool finds it dead when it is
// about to hand it out (validate: a poll of the socket, no round trip) and
// gives a fresh one instead. With a pool idle_timeout below the server's,
// the pool closes it first, and counts it as expired.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <respool/respool.hpp>
#include <respool/transport/redis.hpp>
#include <string>
#include <vector>

#include "pools_support.hpp"
#include "redis_servers.hpp"

using namespace respool;
using namespace std::chrono_literals;

namespace {

// A hiredis client that looks at the server from outside respool. Each call
// is a round trip, so it is never idle long enough for the server to close it.
struct raw_client : respool_test::raw_redis {
  explicit raw_client(const std::string& url) : raw_redis(ConnectionParams::parse(url).port()) {
    REQUIRE(ok());
  }
  // Normal clients connected to the server, this one excluded.
  long long clients() {
    const std::string list = command({"CLIENT", "LIST", "TYPE", "normal"});
    return static_cast<long long>(std::count(list.begin(), list.end(), '\n')) - 1;
  }
};

// The client id the server gives `connection` (connecting it if new): proves which socket it is.
long long client_id(Connection& connection) {
  connection.default_channel();
  auto& impl = dynamic_cast<transport::redis_connection&>(connection.transport_impl());
  auto* r = static_cast<redisReply*>(redisCommand(impl.native_handle(), "CLIENT ID"));
  REQUIRE(r != nullptr);
  REQUIRE(r->type == REDIS_REPLY_INTEGER);
  long long id = r->integer;
  freeReplyObject(r);
  return id;
}

// Sets the server's client idle timeout for the test's duration.
struct server_timeout {
  raw_client& raw;
  server_timeout(raw_client& r, int seconds) : raw(r) {
    raw.command({"CONFIG", "SET", "timeout", std::to_string(seconds)});
  }
  ~server_timeout() { raw.command({"CONFIG", "SET", "timeout", "0"}); }
};

// Polls the server (a round trip each time, no sleep) until it has `expected`
// other clients, for at most 30 s.
bool clients_eventually(raw_client& raw, long long expected) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (raw.clients() != expected)
    if (std::chrono::steady_clock::now() > deadline) return false;
  return true;
}

}  // namespace

TEST_CASE("redis: a connection the server closed for idleness is never handed out",
          "[redis][integration][policy]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_REDIS_URL");
  raw_client raw(url);
  REQUIRE(clients_eventually(raw, 0));
  ConnectionPool pool(url, 2);
  long long first;
  {
    auto conn = pool.acquire();
    first = client_id(*conn);
  }
  REQUIRE(raw.clients() == 1);
  {
    server_timeout timeout(raw, 1);
    REQUIRE(clients_eventually(raw, 0));  // the server dropped the pool's idle connection
  }
  CHECK(pool.stats().idle == 1);  // the pool does not know yet
  auto conn = pool.acquire();
  const long long second = client_id(*conn);  // a working connection, and a new one
  CHECK(second != first);
  const auto st = pool.stats();
  CHECK(st.created == 2);
  CHECK(st.closed == 1);
}

TEST_CASE("redis: with idle_timeout below the server's the pool retires idle connections first",
          "[redis][integration][policy]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_REDIS_URL");
  raw_client raw(url);
  REQUIRE(clients_eventually(raw, 0));
  ConnectionPool pool(url, 2);
  PoolPolicy policy;
  policy.idle_timeout = 1ns;  // anything idle at all is stale
  pool.set_policy(policy);
  long long first;
  {
    auto conn = pool.acquire();
    first = client_id(*conn);
  }
  auto conn = pool.acquire();
  CHECK(client_id(*conn) != first);
  CHECK(pool.stats().expired == 1);
  CHECK(clients_eventually(raw, 1));  // the retired one was closed, not leaked
}
