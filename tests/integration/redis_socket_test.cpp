// redis+socket:// (kombu's spelling of Redis over a unix socket) against a
// real redis-server this test starts, listening on a socket only (--port 0):
// publish/get with the database from ?virtual_host=, AUTH, errors, Python
// kombu reading what respool publishes and back, the pools, and the
// connect_timeout rules of the redis transport.
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <respool/respool.hpp>
#include <respool/transport/redis.hpp>
#include <set>

#include "redis_servers.hpp"

using namespace respool;
using namespace std::chrono_literals;
using namespace respool_test;

namespace {

// A redis-server on a unix socket in a scratch directory, no TCP port.
struct socket_redis {
  scratch_dir dir;
  std::string socket = dir.path + "/redis.sock";
  own_server server;
  explicit socket_redis(const std::string& password = {})
      : server([&] {
          std::vector<std::string> args{"--port",
                                        "0",
                                        "--unixsocket",
                                        dir.path + "/redis.sock",
                                        "--unixsocketperm",
                                        "700",
                                        "--save",
                                        "",
                                        "--appendonly",
                                        "no",
                                        "--logfile",
                                        "/dev/null",
                                        "--dir",
                                        dir.path};
          if (!password.empty()) args.insert(args.end(), {"--requirepass", password});
          return args;
        }()) {
    wait_until(
        [&] {
          raw_redis probe(socket);
          if (!probe.ok()) return false;
          const std::string pong = probe.command({"PING"});
          return pong == "PONG" || pong.find("NOAUTH") != std::string::npos;
        },
        20s, "redis-server on " + socket);
  }
  std::string url(const std::string& query = {}) const { return "redis+socket://" + socket + query; }
};

PublishOptions to(const std::string& queue) {
  PublishOptions o;
  o.routing_key = queue;
  return o;
}

}  // namespace

TEST_CASE("redis+socket: publish and get over a unix socket, database from ?virtual_host",
          "[redis][socket]") {
  socket_redis redis;
  Connection connection(redis.url("?virtual_host=3"));
  CHECK(connection.params().hostname() == redis.socket);
  CHECK(connection.params().virtual_host() == "3");
  Producer producer(connection);
  for (int i = 0; i < 3; ++i) producer.publish({{"n", i}}, to("socket-q"));

  raw_redis raw(redis.socket);
  REQUIRE(raw.ok());
  CHECK(raw.command({"SELECT", "3"}) == "OK");
  CHECK(raw.command({"LLEN", "socket-q"}) == "3");
  CHECK(raw.command({"SELECT", "0"}) == "OK");
  CHECK(raw.command({"LLEN", "socket-q"}) == "0");

  auto& channel = connection.default_channel();
  CHECK(channel.queue_size("socket-q") == 3);
  for (int i = 0; i < 3; ++i) {
    auto m = channel.get("socket-q", true);
    REQUIRE(m);
    CHECK(m->payload() == nlohmann::json{{"n", i}});
  }
  CHECK_FALSE(channel.get("socket-q", true));
}

TEST_CASE("redis+socket: AUTH with the URL's password, errors never show it", "[redis][socket]") {
  socket_redis redis("s3cret-pw");
  Connection good("redis+socket://:s3cret-pw@" + redis.socket);
  good.connect();
  CHECK(good.connected());
  CHECK(good.as_uri() == "redis+socket://:**@" + redis.socket);

  Connection bad("redis+socket://:wrong-s3cret@" + redis.socket);
  try {
    bad.connect();
    FAIL("connected with a wrong password");
  } catch (const error& e) {
    CHECK(e.code() == errc::connection_failed);
    CHECK_THAT(e.what(), Catch::Contains("authentication failed") && !Catch::Contains("s3cret"));
  }
  Connection missing("redis+socket://" + redis.dir.path + "/nope.sock");
  try {
    missing.connect();
    FAIL("connected to a socket that does not exist");
  } catch (const error& e) {
    CHECK(e.code() == errc::connection_failed);
    CHECK_THAT(e.what(), Catch::Contains("nope.sock"));
  }
}

TEST_CASE("redis+socket: Python kombu reads what respool publishes, and back", "[redis][socket][kombu]") {
  socket_redis redis;
  const std::string url = redis.url("?virtual_host=2");  // kombu reads this URL as is
  {
    Connection connection(url);
    Producer producer(connection);
    producer.publish({{"from", "respool"}, {"n", 1}}, to("interop-q"));
    producer.publish({{"from", "respool"}, {"n", 2}}, to("interop-q"));
  }
  auto got = kombu_consume(url, "interop-q", 2);
  REQUIRE(got.size() == 2);
  CHECK(got[0]["payload"] == nlohmann::json{{"from", "respool"}, {"n", 1}});
  CHECK(got[1]["payload"] == nlohmann::json{{"from", "respool"}, {"n", 2}});

  kombu_publish(url, nlohmann::json::array({{{"routing_key", "back-q"}, {"body", {{"from", "kombu"}}}}}));
  Connection connection(url);
  auto m = connection.default_channel().get("back-q", true);
  REQUIRE(m);
  CHECK(m->payload() == nlohmann::json{{"from", "kombu"}});
  raw_redis raw(redis.socket);
  CHECK(raw.command({"SELECT", "2"}) == "OK");
  CHECK(raw.command({"LLEN", "back-q"}) == "0");
}

TEST_CASE("redis+socket: connection and producer pools, from several threads", "[redis][socket][pools]") {
  socket_redis redis;
  const std::string url = redis.url();
  ConnectionPool connections(url, 3);
  ProducerPool producers(connections, 3);
  std::atomic<int> sent{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        producers.acquire(10s)->publish({{"t", t}, {"i", i}}, to("pool-q"));
        ++sent;
      }
    });
  for (auto& thread : threads) thread.join();
  CHECK(sent == 200);
  raw_redis raw(redis.socket);
  CHECK(raw.command({"LLEN", "pool-q"}) == "200");
  CHECK(connected_idle(connections) >= 1);
  CHECK(pools::connections[url].acquire(1s)->default_channel().queue_size("pool-q") == 200);
  pools::reset();
}

// ----------------------------------------------------- connect_timeout rules

namespace {
// A TCP socket that listens (the kernel completes handshakes) and never
// accepts or answers: a server that hangs.
struct silent_listener {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  std::uint16_t port = 0;
  silent_listener() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~silent_listener() { ::close(fd); }
};

std::string connect_error(const std::string& url) {
  Connection connection(url);
  try {
    connection.connect();
  } catch (const error& e) {
    CHECK(e.code() == errc::connection_failed);
    return e.what();
  }
  FAIL("connected to a server that never answers");
  return {};
}
}  // namespace

TEST_CASE("redis: a connect that meets connect_timeout says connect_timeout", "[redis][timeouts]") {
  silent_listener hung;
  const std::string base = "redis://127.0.0.1:" + std::to_string(hung.port);
  // connect_timeout shorter than socket_timeout: connect_timeout is what expired.
  CHECK_THAT(connect_error(base + "?connect_timeout=0.3&socket_timeout=5"),
             Catch::Contains("timed out (connect_timeout expired)") && !Catch::Contains("(socket_timeout)"));
  CHECK_THAT(connect_error(base + "?connect_timeout=0.3"), Catch::Contains("connect_timeout expired"));
  // socket_timeout shorter: it is the one that expired.
  CHECK_THAT(connect_error(base + "?connect_timeout=5&socket_timeout=0.3"),
             Catch::Contains("socket_timeout"));
}

TEST_CASE("redis: connect_timeout=0 does not hang on a server that accepts and never answers",
          "[redis][timeouts]") {
  silent_listener hung;
  const std::string base = "redis://127.0.0.1:" + std::to_string(hung.port);
  // The TCP connect has the OS's limit; the handshake is still bounded: by
  // socket_timeout, and when that is 0 too, by default_socket_timeout (5 s).
  CHECK_THAT(connect_error(base + "?connect_timeout=0&socket_timeout=0.3"), Catch::Contains("timed out"));
  CHECK_THAT(connect_error(base + "?connect_timeout=0&socket_timeout=0"),
             Catch::Contains("timed out") && Catch::Contains("connect_timeout=0"));
}
