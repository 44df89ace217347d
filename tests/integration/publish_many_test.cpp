// Producer::publish_many on real brokers: a batch in flight at once.
//  * amqp://: every message is sent, then the confirms are awaited together.
//    A queue whose policy rejects publishes past its length (x-overflow
//    reject-publish) nacks part of a batch: the error says how many; the
//    accepted ones are there. A batch to a missing exchange fails with
//    channel_error and the connection goes on.
//  * redis://: the batch is one pipelined round trip, to the default exchange,
//    a direct and a topic exchange (kombu reads what respool wrote), in order.
//  * Both: nothing is sent if one body cannot be encoded.
//
// Reads RESPOOL_REDIS_URL, RESPOOL_AMQP_URL and RESPOOL_AMQP_CTL (tests/run).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <respool/respool.hpp>
#include <respool/transport/amqp.hpp>
#include <respool/transport/redis.hpp>
#include <string>
#include <vector>

#include "pools_support.hpp"

using namespace respool;

namespace {

std::vector<nlohmann::json> numbered(int n) {
  std::vector<nlohmann::json> bodies;
  for (int i = 0; i < n; ++i) bodies.push_back({{"n", i}});
  return bodies;
}

// Reads the queue to its end (acknowledging nothing); the "n" of each body.
std::vector<int> drain(Connection& c, const std::string& queue) {
  std::vector<int> seen;
  while (auto m = c.default_channel().get(queue, true)) seen.push_back(m->payload().at("n").get<int>());
  return seen;
}

std::vector<int> range(int from, int to) {
  std::vector<int> out;
  for (int i = from; i < to; ++i) out.push_back(i);
  return out;
}

std::string unique(const std::string& what) {
  return "respool-many-" + what + "-" + std::to_string(::getpid());
}

}  // namespace

TEST_CASE("publish_many delivers a batch in order, on both brokers", "[publish_many][redis][amqp]") {
  for (const char* var : {"RESPOOL_REDIS_URL", "RESPOOL_AMQP_URL"}) {
    const char* url = respool_test::env(var);
    if (url == nullptr) {
      WARN("skipped: " << var << " not set (run tests/run)");
      continue;
    }
    INFO(url);
    Connection c(url);
    Producer producer(c);
    const std::string q = unique("order");

    // The default exchange.
    c.default_channel().declare(Queue{q, Exchange{""}, q});
    c.default_channel().purge(q);
    PublishOptions o;
    o.routing_key = q;
    producer.publish_many(numbered(500), o);
    CHECK(drain(c, q) == range(0, 500));

    // A direct exchange, bound twice: each batch message once per queue.
    const Exchange direct{unique("direct"), "direct"};
    c.default_channel().declare(Queue{q, direct, "rk"});
    c.default_channel().declare(Queue{q + "-2", direct, "rk"});
    c.default_channel().purge(q + "-2");
    o.exchange = direct.name;
    o.routing_key = "rk";
    o.declare = {direct};
    producer.publish_many(numbered(100), o);
    CHECK(drain(c, q) == range(0, 100));
    CHECK(drain(c, q + "-2") == range(0, 100));
    o.routing_key = "nobody";  // unroutable: dropped, as publish()
    producer.publish_many(numbered(10), o);
    CHECK(c.default_channel().queue_size(q) == 0);

    // A topic exchange.
    const Exchange topic{unique("topic"), "topic"};
    c.default_channel().declare(Queue{q, topic, "a.*"});
    o.exchange = topic.name;
    o.routing_key = "a.b";
    o.declare = {topic};
    producer.publish_many(numbered(20), o);
    CHECK(drain(c, q) == range(0, 20));

    // An empty batch sends nothing; a body that cannot be encoded: nothing sent.
    producer.publish_many(std::vector<nlohmann::json>{}, o);
    PublishOptions raw;
    raw.routing_key = q;
    raw.serializer = "raw";
    std::vector<nlohmann::json> mixed = {"a", "b", 3, "d"};
    CHECK_THROWS_MATCHES(producer.publish_many(mixed, raw), respool::error,
                         Catch::Predicate<respool::error>(
                             [](const respool::error& e) { return e.code() == errc::encoding_error; }));
    CHECK(c.default_channel().queue_size(q) == 0);
    c.default_channel().purge(q + "-2");
  }
}

TEST_CASE("amqp: publish_many reports the part of a batch the broker rejected (basic.nack)",
          "[publish_many][amqp]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_AMQP_URL");
  const char* ctl = respool_test::env("RESPOOL_AMQP_CTL");
  REQUIRE(ctl != nullptr);
  const std::string q = unique("bounded");
  // A policy as an operator sets it: at most 5 ready messages, refuse the rest.
  const std::string policy = std::string(ctl) + " -q set_policy --apply-to queues " + q + " '^" + q +
                             "$' '{\"max-length\":5,\"overflow\":\"reject-publish\"}'";
  REQUIRE(std::system(policy.c_str()) == 0);
  Connection c(url);
  c.default_channel().declare(Queue{q, Exchange{""}, q});
  c.default_channel().purge(q);
  Producer producer(c);
  PublishOptions o;
  o.routing_key = q;
  try {
    producer.publish_many(numbered(12), o);
    FAIL("a batch past the queue's max-length was reported as confirmed");
  } catch (const respool::error& e) {
    INFO(e.what());
    CHECK(e.code() == errc::channel_error);
    CHECK(std::string(e.what()).find("rejected 7 of the 12 messages") != std::string::npos);
  }
  CHECK(drain(c, q) == range(0, 5));  // the confirmed ones are there
  // The connection goes on.
  producer.publish_many(numbered(3), o);
  CHECK(drain(c, q) == range(0, 3));
  std::system((std::string(ctl) + " -q clear_policy " + q).c_str());
}

TEST_CASE("amqp: publish_many to a missing exchange fails with channel_error, the connection goes on",
          "[publish_many][amqp]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_AMQP_URL");
  Connection c(url);
  Producer producer(c);
  PublishOptions o;
  o.exchange = unique("missing");
  o.routing_key = "rk";
  try {
    producer.publish_many(numbered(50), o);
    FAIL("a batch to a missing exchange was reported as confirmed");
  } catch (const respool::error& e) {
    INFO(e.what());
    CHECK(e.code() == errc::channel_error);
  }
  const std::string q = unique("after");
  c.default_channel().declare(Queue{q, Exchange{""}, q});
  PublishOptions ok;
  ok.routing_key = q;
  producer.publish_many(numbered(5), ok);
  CHECK(drain(c, q) == range(0, 5));
}
