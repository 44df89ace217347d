// Publishing to a named exchange on redis:// is one round trip: kombu's
// binding lookup and the pushes run in one server-side script
// (respool/detail/redis_route.hpp). These tests check that it is one command
// per publish, that bindings other clients add or remove are honoured by the
// very next publish (no cache), that a server which lost the script gets it
// again, and that topic routing on the server agrees with the client-side
// reference of kombu's regex semantics (detail::redis::topic_matcher).
//
// Reads RESPOOL_REDIS_URL (tests/run); the first test starts a redis-server
// of its own, whose command statistics no other test disturbs.
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <respool/respool.hpp>
#include <respool/transport/redis.hpp>
#include <string>
#include <vector>

#include "pools_support.hpp"
#include "redis_servers.hpp"

using namespace respool;

namespace {

// A raw hiredis client stands for what another process (Python kombu,
// redis-cli) does.
using raw_client = respool_test::raw_redis;

std::string member(const std::string& routing_key, const std::string& pattern, const std::string& queue) {
  return detail::redis::binding_member(routing_key, pattern, queue);
}

void publish(Connection& c, const std::string& exchange, const std::string& routing_key) {
  PublishOptions o;
  o.exchange = exchange;
  o.routing_key = routing_key;
  Producer(c).publish(nlohmann::json{{"k", routing_key}}, o);
}

std::uint16_t shared_port(const std::string& url) { return ConnectionParams::parse(url).port(); }

}  // namespace

TEST_CASE("redis: a publish to a named exchange is one command, the lookup runs on the server",
          "[redis][route]") {
  respool_test::own_redis server;
  const std::string url = "redis://127.0.0.1:" + std::to_string(server.port);
  Connection c(url);
  const Exchange exchange{"route-direct", "direct"};
  c.default_channel().declare(Queue{"route-q1", exchange, "rk"});
  c.default_channel().declare(Queue{"route-q2", exchange, "rk"});
  c.default_channel().declare(Queue{"route-other", exchange, "other"});
  publish(c, exchange.name, "rk");  // loads the script (once per connection)

  raw_client raw(server.port);
  REQUIRE(raw.ok());
  raw.command({"CONFIG", "RESETSTAT"});
  constexpr int n = 50;
  for (int i = 0; i < n; ++i) publish(c, exchange.name, "rk");
  // One EVALSHA per publish; the SMEMBERS and LPUSHes counted are the ones
  // the script ran (a client-side lookup would add n more SMEMBERS).
  CHECK(raw.calls("evalsha") == n);
  CHECK(raw.calls("smembers") == n);
  CHECK(raw.calls("lpush") == 2 * n);
  CHECK(c.default_channel().queue_size("route-q1") == n + 1);
  CHECK(c.default_channel().queue_size("route-q2") == n + 1);
  CHECK(c.default_channel().queue_size("route-other") == 0);
}

TEST_CASE("redis: bindings another client adds or removes are honoured by the very next publish",
          "[redis][route]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_REDIS_URL");
  const std::string tag = std::to_string(::getpid());
  const std::string exchange = "route-live-" + tag, qa = "route-live-a-" + tag, qb = "route-live-b-" + tag;
  const std::string set = detail::redis::binding_key(exchange);
  raw_client raw(shared_port(url));
  REQUIRE(raw.ok());
  raw.command({"DEL", set, qa, qb});
  Connection c(url);
  c.default_channel().declare(Exchange{exchange, "direct"});

  publish(c, exchange, "rk");  // no binding: dropped
  CHECK(raw.integer({"LLEN", qa}) == 0);
  raw.command({"SADD", set, member("rk", "", qa)});  // as kombu's queue_bind writes it
  publish(c, exchange, "rk");
  CHECK(raw.integer({"LLEN", qa}) == 1);
  raw.command({"SADD", set, member("rk", "", qb)});
  publish(c, exchange, "rk");
  CHECK(raw.integer({"LLEN", qa}) == 2);
  CHECK(raw.integer({"LLEN", qb}) == 1);
  raw.command({"SREM", set, member("rk", "", qa)});  // kombu's queue_unbind
  publish(c, exchange, "rk");
  CHECK(raw.integer({"LLEN", qa}) == 2);
  CHECK(raw.integer({"LLEN", qb}) == 2);
  // Members kombu could not split into three fields are skipped, as kombu's
  // lookup would fail on them and the client-side lookup skips them.
  raw.command({"SADD", set, "rk" + std::string(detail::redis::sep) + qa});
  publish(c, exchange, "rk");
  CHECK(raw.integer({"LLEN", qa}) == 2);
  CHECK(raw.integer({"LLEN", qb}) == 3);

  SECTION("a server that lost the script (SCRIPT FLUSH, a restart) gets it again") {
    raw.command({"SCRIPT", "FLUSH"});
    publish(c, exchange, "rk");
    CHECK(raw.integer({"LLEN", qb}) == 4);
  }
  SECTION("a priority message goes to the queue's priority list, as kombu's _q_for_pri") {
    PublishOptions o;
    o.exchange = exchange;
    o.routing_key = "rk";
    o.priority = 7;
    Producer(c).publish(nlohmann::json{{"k", 1}}, o);
    const std::string list = detail::redis::priority_queue(qb, 7);
    CHECK(raw.integer({"LLEN", list}) == 1);
    CHECK(c.default_channel().queue_size(qb) == 4);
    raw.command({"DEL", list});
  }
  raw.command({"DEL", set, qa, qb});
}

TEST_CASE("redis: topic routing on the server agrees with kombu's regex semantics", "[redis][route][topic]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_REDIS_URL");
  const std::string tag = std::to_string(::getpid());
  const std::string exchange = "route-topic-" + tag;
  const std::string set = detail::redis::binding_key(exchange);
  using detail::redis::key_to_pattern;
  // What kombu stores for binding keys, and regular expressions outside the
  // subset kombu writes (they never match: kombu would raise re.error).
  const std::vector<std::string> patterns = {
      key_to_pattern("a.*"),
      key_to_pattern("#.error"),
      key_to_pattern("*.b.#"),
      key_to_pattern("x"),
      key_to_pattern("#"),
      key_to_pattern("*"),
      key_to_pattern("a\\b.c+d"),
      key_to_pattern("sp ace.*"),
      key_to_pattern(std::string("nul\0.#", 6)),
      key_to_pattern("a.#.z"),
      "^a.*?[^\\.]$",
      "^abc$",
      "^a\\.b",
      "^a+b$",
      "^\\d$",
      "*abc",
      "^a**$",
      "^ab*?c$",
      "^\\000x$",
      "^\\01x$",
      "^[ab]$",
      "^a|b$",
      "",
      "^$",
  };
  const std::vector<std::string> keys = {"a.b",
                                         "a.b.c",
                                         "error",
                                         "x.error",
                                         "a",
                                         "a.b\n",
                                         "a.b.",
                                         "",
                                         "abc",
                                         "ac",
                                         "abbc",
                                         "x",
                                         "a.z",
                                         "a.q.z",
                                         "a.b",
                                         "q.b",
                                         "q.b.r",
                                         "\nx",
                                         "sp ace.1",
                                         std::string("\0x", 2),
                                         std::string("nul\0.1", 6),
                                         "a\\b.c+d",
                                         "a.",
                                         ".b",
                                         "b"};
  raw_client raw(shared_port(url));
  REQUIRE(raw.ok());
  raw.command({"DEL", set});
  std::vector<std::string> queues;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    queues.push_back("route-topic-" + tag + "-" + std::to_string(i));
    raw.command({"DEL", queues.back()});
    raw.command({"SADD", set, member("key-" + std::to_string(i), patterns[i], queues.back())});
  }
  Connection c(url);
  c.default_channel().declare(Exchange{exchange, "topic"});
  for (const auto& key : keys) {
    publish(c, exchange, key);
    for (std::size_t i = 0; i < patterns.size(); ++i) {
      const bool expected = detail::redis::topic_matcher(patterns[i])(key);
      const bool got = raw.integer({"LLEN", queues[i]}) == 1;
      INFO("pattern '" << patterns[i] << "', routing key '" << key << "'");
      CHECK(got == expected);
      raw.command({"DEL", queues[i]});
    }
  }
  raw.command({"DEL", set});
}
