// Global and custom pool groups, connection pools and producer pools on
// memory:// — kombu's t/unit/test_pools.py behaviours, and the
// Connection-equality tests of t/unit/test_connection.py.
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <respool/respool.hpp>
#include <string>
#include <thread>

using namespace respool;
using namespace std::chrono_literals;

namespace {
// Every test starts from pristine global pools and the default limit.
struct fresh_pools {
  fresh_pools() {
    pools::reset();
    pools::set_limit(200, true);
  }
  ~fresh_pools() {
    pools::reset();
    pools::set_limit(200, true);
  }
};
}  // namespace

TEST_CASE("connections with equal parameters share one pool", "[pools]") {
  fresh_pools guard;
  Connection c1("memory://");
  Connection c2("memory://");
  Connection c3("memory://somethingelse/");
  CHECK(&pools::connections[c1] == &pools::connections[c2]);
  CHECK(&pools::connections[c1] != &pools::connections[c3]);
  CHECK(&pools::connections[c1] == &pools::connections["memory://localhost"]);
  CHECK(&pools::connections[c1] == &pools::connections[ConnectionParams::parse("memory://localhost//")]);
  CHECK(pools::connections.size() == 2);
  // Redis spellings of one broker normalise to one key (no transport needed to compare).
  CHECK(ConnectionParams::parse("redis://localhost:6379") == ConnectionParams::parse("redis://localhost"));
  CHECK(ConnectionParams::parse("redis://localhost:6379") ==
        ConnectionParams::parse("redis://localhost:6379/0"));
  CHECK(std::hash<ConnectionParams>{}(ConnectionParams::parse("redis://localhost")) ==
        std::hash<ConnectionParams>{}(ConnectionParams::parse("redis://localhost:6379/0")));
}

TEST_CASE("Connection: lazy, movable, equality through params, clear errors", "[connection]") {
  Connection c("memory://");
  CHECK_FALSE(c.connected());
  CHECK(c.as_uri() == "memory://localhost//");
  c.default_channel();
  CHECK(c.connected());
  Connection moved(std::move(c));
  CHECK(moved.connected());
  CHECK(moved.default_channel().connection().params() == moved.params());
  moved.close();
  CHECK_FALSE(moved.connected());
  moved.ensure_connection(0, 1ms, 1ms, 1ms);
  CHECK(moved.connected());
  CHECK(moved.sessions() == 2);

  CHECK_THROWS_AS(Connection("nosuch://host"), unknown_transport);
  CHECK_THROWS_AS(Connection("://x"), invalid_url);
  CHECK(ConnectionParams::parse("amqp://user:s3cret@host//").as_uri() == "amqp://user:**@host:5672//");
  try {
    Connection("memory://user:s3cret@host:port//");
    FAIL("no exception");
  } catch (const invalid_url& e) {
    CHECK(std::string(e.what()).find("s3cret") == std::string::npos);
  }
}

TEST_CASE("ConnectionPool connects lazily and throws connection_limit_exceeded", "[pools]") {
  ConnectionPool pool("memory://cp/", 2);
  CHECK(pool.params() == ConnectionParams::parse("memory://cp/"));
  auto a = pool.acquire();
  CHECK_FALSE(a->connected());  // lazily connected
  a->connect();
  auto b = pool.acquire();
  CHECK_THROWS_AS(pool.acquire(0s), connection_limit_exceeded);
  try {
    pool.acquire(10ms);
    FAIL("no exception");
  } catch (const acquire_timeout& e) {
    // An expired wait of a connection pool is both.
    CHECK(dynamic_cast<const connection_limit_exceeded*>(&e) != nullptr);
    CHECK(e.limit() == 2);
    CHECK(e.waited() >= 10ms);
  }
  CHECK_THROWS_AS(pool.acquire(10ms), connection_limit_exceeded);
  CHECK_THROWS_AS(ConnectionPool("nosuch://x", 1), unknown_transport);
}

TEST_CASE("an idle pooled connection closed underneath reconnects on next use", "[pools]") {
  ConnectionPool pool("memory://dead/", 1);
  Connection* raw = nullptr;
  {
    auto conn = pool.acquire();
    conn->connect();
    raw = conn.get();
  }
  raw->transport_impl().close();  // the session dies while the connection is idle
  auto conn = pool.acquire();
  CHECK(conn.get() == raw);  // not connected = lazily usable, so it is reused
  conn->default_channel().declare(Exchange{"x"});
  CHECK(conn->alive());
  CHECK(conn->sessions() == 2);
}

TEST_CASE("ProducerPool: producers borrow a connection per lease and give it back", "[pools][producer]") {
  fresh_pools guard;
  Connection connection("memory://prod/");
  auto& connections = pools::connections[connection];
  auto& producers = pools::producers[connection];
  CHECK(connections.stats().in_use == 0);
  {
    auto producer = producers.acquire();
    CHECK(producer->has_connection());
    CHECK(connections.stats().in_use == 1);  // prepare: borrowed a connection
    CHECK(producer->connection().params() == connection.params());
  }
  CHECK(connections.stats().in_use == 0);  // release: handed it back
  CHECK(producers.stats().idle == 1);      // the idle producer holds no connection
  CHECK(connections.stats().idle == 1);

  // The connection limit is the real cap.
  pools::set_limit(1);
  auto first = producers.acquire();
  auto waiter = std::async(std::launch::async, [&] { return producers.acquire(5s)->has_connection(); });
  while (producers.stats().waiting == 0 && connections.stats().waiting == 0) std::this_thread::yield();
  first.release();
  CHECK(waiter.get());
}

TEST_CASE("Producer publishes kombu-shaped messages: json, raw, zlib, headers, priority", "[producer]") {
  Connection connection("memory://pub/");
  Exchange news{"news"};
  Queue domestic{"news_domestic", news, "domestic"};
  Channel& channel = connection.default_channel();
  CHECK(maybe_declare(domestic, channel));
  CHECK_FALSE(maybe_declare(domestic, channel));
  CHECK_FALSE(maybe_declare(news, channel));  // declared with the queue

  Producer producer(connection);
  nlohmann::json article = {{"title", "No cellular coverage on the tube for 2012"},
                            {"ingress", "yadda yadda yadda"}};
  PublishOptions options;
  options.exchange = "news";
  options.routing_key = "domestic";
  producer.publish(article, options);
  auto m = channel.get("news_domestic");
  REQUIRE(m);
  CHECK(m->payload() == article);
  CHECK(m->content_type() == "application/json");
  CHECK(m->content_encoding() == "utf-8");
  CHECK(m->exchange() == "news");
  CHECK(m->routing_key() == "domestic");
  CHECK(m->delivery_mode() == 2);

  options.compression = "zlib";
  options.headers = {{"x-trace", "abc"}};
  options.priority = 5;
  producer.publish(article, options);
  m = channel.get("news_domestic");
  REQUIRE(m);
  CHECK(m->headers()["compression"] == "application/x-gzip");
  CHECK(m->headers()["x-trace"] == "abc");
  CHECK(m->priority() == 5);
  CHECK(m->body() != article.dump());  // compressed on the wire
  CHECK(m->payload() == article);

  PublishOptions raw;
  raw.exchange = "news";
  raw.routing_key = "domestic";
  producer.publish_raw(std::string("\x00\x01\xff", 3), raw);
  m = channel.get("news_domestic");
  REQUIRE(m);
  CHECK(m->content_type() == "application/data");
  CHECK(m->content_encoding() == "binary");
  CHECK(m->body() == std::string("\x00\x01\xff", 3));

  PublishOptions unrouted;
  unrouted.exchange = "news";
  unrouted.routing_key = "foreign";
  CHECK_NOTHROW(producer.publish(article, unrouted));  // dropped, as AMQP does
  CHECK(channel.queue_size("news_domestic") == 0);

  PublishOptions bad;
  bad.serializer = "pickle";
  CHECK_THROWS_AS(producer.publish(article, bad), error);
}

TEST_CASE("maybe_declare declares again on a reconnected connection", "[producer]") {
  Connection connection("memory://redeclare/");
  Exchange e{"events", "fanout"};
  CHECK(maybe_declare(e, connection));
  CHECK_FALSE(maybe_declare(e, connection));
  connection.close();
  CHECK(maybe_declare(e, connection));  // new session: declares again
}

TEST_CASE("set_limit / get_limit / use_default_limit", "[pools][limit]") {
  fresh_pools guard;
  CHECK(pools::get_limit() == 200);
  auto& pool = pools::connections["memory://lim/"];
  CHECK(pool.limit() == 200);
  pools::Connections follower(use_default_limit);
  pools::Connections custom(100);
  pools::Producers custom_producers(custom.limit());
  CHECK(custom_producers.limit() == 100);
  CHECK(follower.limit() == 200);

  CHECK(pools::set_limit(34) == 34);
  CHECK(pools::get_limit() == 34);
  CHECK(pool.limit() == 34);
  CHECK(pools::producers.limit() == 34);
  CHECK(follower.limit() == 34);
  CHECK(follower["memory://lim/"].limit() == 34);
  CHECK(custom.limit() == 100);
  CHECK(custom["memory://lim/"].limit() == 100);

  // Growing wakes waiters.
  pools::set_limit(1);
  auto held = pool.acquire();
  auto waiter = std::async(std::launch::async, [&] { return bool(pool.acquire(10s)); });
  while (pool.stats().waiting == 0) std::this_thread::yield();
  pools::set_limit(2);
  CHECK(waiter.get());

  // Shrinking below the number in use throws unless forced; nothing changes on refusal.
  auto a = pool.acquire(0s);
  CHECK(pool.stats().in_use == 2);
  CHECK_THROWS_AS(pools::set_limit(1), error);
  CHECK(pools::get_limit() == 2);
  CHECK(pool.limit() == 2);
  CHECK(pools::set_limit(1, true) == 1);
  CHECK(pool.limit() == 1);
}

TEST_CASE("reset force-closes and forgets every pool", "[pools]") {
  fresh_pools guard;
  auto& pool = pools::connections["memory://reset/"];
  auto lease = pool.acquire();
  lease->connect();
  { auto p = pools::producers["memory://reset/"].acquire(); }
  pools::Connections custom(3);
  { auto c = custom["memory://reset/"].acquire(); }
  CHECK(pools::connections.size() == 1);
  pools::reset();
  CHECK(pools::connections.size() == 0);
  CHECK(pools::producers.size() == 0);
  CHECK(custom.size() == 0);
  CHECK_FALSE(lease->connected());  // dragged from under our feet
  lease.release();                  // a dead slot: safe
  auto& again = pools::connections["memory://reset/"];
  CHECK(again.stats().created == 0);
}

TEST_CASE("Producer::publish_many publishes a batch in order, or nothing if a body cannot be encoded",
          "[producer][publish_many]") {
  Connection connection("memory://pub-many/");
  Exchange news{"news"};
  Queue domestic{"news_domestic", news, "domestic"};
  Channel& channel = connection.default_channel();
  Producer producer(connection);
  PublishOptions options;
  options.exchange = "news";
  options.routing_key = "domestic";
  options.declare = {news};
  options.compression = "zlib";
  channel.declare(domestic);
  std::vector<nlohmann::json> bodies;
  for (int i = 0; i < 20; ++i) bodies.push_back({{"n", i}});
  producer.publish_many(bodies, options);
  for (int i = 0; i < 20; ++i) {
    auto m = channel.get("news_domestic");
    REQUIRE(m);
    CHECK(m->payload() == nlohmann::json{{"n", i}});
    CHECK(m->headers().at("compression") == "application/x-gzip");
  }
  CHECK_FALSE(channel.get("news_domestic"));

  producer.publish_many(std::vector<nlohmann::json>{}, options);  // nothing to do
  options.serializer = "raw";
  CHECK_THROWS_AS(producer.publish_many(std::vector<nlohmann::json>{"a", 1}, options), respool::error);
  CHECK(channel.queue_size("news_domestic") == 0);  // not even "a"
}

TEST_CASE("ConnectionPool and ProducerPool built directly name themselves in exhausted errors, masked",
          "[pools][errors]") {
  ConnectionPool connections("memory://user:s3cret-pw@localhost/named", 1);
  ProducerPool producers(connections, 1);
  auto held = connections.acquire();
  for (auto attempt : {0, 1}) {
    try {
      if (attempt == 0)
        (void)connections.acquire(0s);
      else
        (void)producers.acquire(0s);
      FAIL("acquired past the limit");
    } catch (const respool::error& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.find("memory://user:**@localhost") != std::string::npos);
      CHECK(what.find("s3cret-pw") == std::string::npos);
    }
  }
}
