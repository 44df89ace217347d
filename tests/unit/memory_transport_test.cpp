// respool-test: concurrency
// Unit tests of respool/transport/memory.hpp: the in-process memory:// broker.
// The routing cases port kombu's t/unit/transport/virtual/test_exchange.py.

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "respool/transport/memory.hpp"

namespace {

using respool::Envelope;
using respool::Exchange;
using respool::Queue;
using respool::transport::memory_connection;
namespace memory = respool::transport::memory;

// A fresh virtual host per test, so tests never see each other's queues.
std::string fresh_vhost(const std::string& name) {
  static std::atomic<int> counter{0};
  return "memory-test-" + name + "-" + std::to_string(counter.fetch_add(1));
}

std::unique_ptr<memory_connection> connect(const std::string& vhost) {
  auto c = std::make_unique<memory_connection>("localhost", vhost);
  c->connect();
  return c;
}

// A queue on the default exchange.
Queue plain(std::string name) { return Queue{std::move(name), Exchange{}, std::string()}; }

Envelope raw(std::string body) {
  Envelope e;
  e.body = std::move(body);
  e.content_type = "application/data";
  e.content_encoding = "binary";
  return e;
}

// Drain `queue`, returning the bodies in order.
std::vector<std::string> drain(respool::transport::channel_impl& channel, const std::string& queue) {
  std::vector<std::string> bodies;
  while (auto m = channel.get(queue, true)) bodies.push_back(m->body());
  return bodies;
}

// The queues (of `candidates`) that received one message, each drained.
std::set<std::string> receivers(respool::transport::channel_impl& channel,
                                const std::vector<std::string>& candidates) {
  std::set<std::string> got;
  for (const auto& q : candidates) {
    std::size_t n = drain(channel, q).size();
    if (n > 0) got.insert(q);
    CHECK(n <= 1);  // at most one copy per queue, even with overlapping bindings
  }
  return got;
}

void declare_bound(respool::transport::channel_impl& ch, const Exchange& x, const std::string& queue,
                   const std::string& key) {
  Queue q{queue, x, key};
  ch.declare_exchange(x);
  ch.declare_queue(q);
  ch.bind_queue(q);
}

// A one-shot gate: threads wait() until open() (std::latch-like, C++17).
class gate {
 public:
  void open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

bool is_code(const respool::error& e, respool::errc code) {
  return e.code() == respool::make_error_code(code);
}

}  // namespace

TEST_CASE("memory:// is registered and creates unconnected connections", "[memory]") {
  CHECK(memory::registered);
  CHECK(memory::ensure_registered());
  CHECK(memory::ensure_registered());
  auto factory = respool::transport::find_transport("memory");
  REQUIRE(factory);
  auto params = respool::ConnectionParams::parse("memory://localhost/" + fresh_vhost("registry"));
  auto impl = factory(params);
  REQUIRE(impl);
  CHECK_FALSE(impl->connected());
  CHECK_FALSE(impl->alive());
  CHECK_THROWS_MATCHES(impl->channel(), respool::error, Catch::Predicate<respool::error>([](const auto& e) {
                         return is_code(e, respool::errc::connection_lost);
                       }));
  impl->connect();
  CHECK(impl->connected());
  CHECK(impl->alive());
  auto broker = memory::broker_for(params);
  CHECK(broker->stats().live_connections == 1);
  impl->close();
  CHECK_FALSE(impl->connected());
  CHECK(broker->stats().live_connections == 0);
}

TEST_CASE("topic patterns follow kombu's key_to_pattern regexes", "[memory][topic]") {
  using memory::topic_pattern;
  // test_Topic: prepare_bind('stock.#') == '^stock\..*?$'
  topic_pattern stock_all("stock.#");
  CHECK(stock_all.matches("stock.us.nasdaq"));
  CHECK(stock_all.matches("stock.europe.OSE"));
  CHECK(stock_all.matches("stock."));       // `.*?` may be empty
  CHECK_FALSE(stock_all.matches("stock"));  // the dot is literal
  CHECK_FALSE(stock_all.matches("stockxeuropexOSE"));
  CHECK_FALSE(stock_all.matches("candy.schleckpulver.snap_crackle"));

  topic_pattern stock_us("stock.us.*");
  CHECK(stock_us.matches("stock.us.nasdaq"));
  CHECK_FALSE(stock_us.matches("stock.europe.OSE"));
  CHECK_FALSE(stock_us.matches("stock.us."));  // `*` is at least one character, not ending in a dot
  CHECK_FALSE(stock_us.matches("stock.us"));
  CHECK(stock_us.matches("stock.us.a.b"));  // kombu's `.*?[^\.]` spans dots

  topic_pattern hash("#");
  CHECK(hash.matches(""));
  CHECK(hash.matches("stockxeuropexOSE"));
  CHECK(hash.matches("candy.schleckpulver.snap_crackle"));

  topic_pattern middle("*.orange.*");
  CHECK(middle.matches("quick.orange.rabbit"));
  CHECK_FALSE(middle.matches("quick.orange"));
  CHECK_FALSE(middle.matches("lazy.brown.fox"));
  CHECK_FALSE(middle.matches(".orange.x"));

  topic_pattern tail("lazy.#");
  CHECK(tail.matches("lazy.orange.male.rabbit"));
  CHECK_FALSE(tail.matches("quick.lazy.x"));

  topic_pattern inner("a.#.z");
  CHECK(inner.matches("a.b.c.z"));
  CHECK(inner.matches("a..z"));
  CHECK_FALSE(inner.matches("a.z"));  // `#` between two literal dots

  topic_pattern literal("stock");
  CHECK(literal.matches("stock"));
  CHECK_FALSE(literal.matches("stock.us"));
  CHECK_FALSE(literal.matches("stoc"));

  topic_pattern special("a+b.(c)");  // regex metacharacters are literal (kombu escapes them)
  CHECK(special.matches("a+b.(c)"));
  CHECK_FALSE(special.matches("aab.c"));
}

TEST_CASE("direct exchange routes on exact routing keys (kombu test_Direct)", "[memory][routing]") {
  auto vhost = fresh_vhost("direct");
  auto conn = connect(vhost);
  auto& ch = conn->channel();
  Exchange e{"eFoo", "direct"};
  declare_bound(ch, e, "qFoo", "rFoo");
  declare_bound(ch, e, "qFox", "rFoo");
  declare_bound(ch, e, "qBar", "rBar");
  declare_bound(ch, e, "qBaz", "rBaz");
  const std::vector<std::string> all{"qFoo", "qFox", "qBar", "qBaz"};

  ch.publish(raw("1"), "eFoo", "rFoo");
  CHECK(receivers(ch, all) == std::set<std::string>{"qFoo", "qFox"});
  ch.publish(raw("2"), "eFoo", "rBar");
  CHECK(receivers(ch, all) == std::set<std::string>{"qBar"});
  ch.publish(raw("3"), "eFoo", "rMoz");
  CHECK(receivers(ch, all).empty());

  auto stats = conn->broker()->stats();
  CHECK(stats.published == 3);
  CHECK(stats.routed == 3);
  CHECK(stats.dropped == 1);
}

TEST_CASE("fanout exchange copies to every bound queue (kombu test_Fanout)", "[memory][routing]") {
  auto conn = connect(fresh_vhost("fanout"));
  auto& ch = conn->channel();
  Exchange e{"eFoo", "fanout"};
  declare_bound(ch, e, "qFoo", "");
  declare_bound(ch, e, "qFox", "whatever");
  declare_bound(ch, e, "qBar", "rBar");
  declare_bound(ch, e, "qBar", "rBar2");  // a second binding still gives one copy
  ch.declare_queue(plain("qUnbound"));
  const std::vector<std::string> all{"qFoo", "qFox", "qBar", "qUnbound"};

  ch.publish(raw("x"), "eFoo", "rFoo");
  CHECK(receivers(ch, all) == std::set<std::string>{"qFoo", "qFox", "qBar"});
  ch.publish(raw("y"), "eFoo", "");
  CHECK(receivers(ch, all) == std::set<std::string>{"qFoo", "qFox", "qBar"});
}

TEST_CASE("topic exchange routes on patterns (kombu test_Topic)", "[memory][routing][topic]") {
  auto conn = connect(fresh_vhost("topic"));
  auto& ch = conn->channel();
  Exchange e{"eFoo", "topic"};
  declare_bound(ch, e, "rFoo", "stock.#");
  declare_bound(ch, e, "rBar", "stock.us.*");
  const std::vector<std::string> all{"rFoo", "rBar"};

  ch.publish(raw("1"), "eFoo", "stock.us.nasdaq");
  CHECK(receivers(ch, all) == std::set<std::string>{"rFoo", "rBar"});
  ch.publish(raw("2"), "eFoo", "stock.europe.OSE");
  CHECK(receivers(ch, all) == std::set<std::string>{"rFoo"});
  ch.publish(raw("3"), "eFoo", "stockxeuropexOSE");
  CHECK(receivers(ch, all).empty());
  ch.publish(raw("4"), "eFoo", "candy.schleckpulver.snap_crackle");
  CHECK(receivers(ch, all).empty());
}

TEST_CASE("topic exchange delivers once per queue with overlapping bindings (kombu test_TopicMultibind)",
          "[memory][routing][topic]") {
  auto conn = connect(fresh_vhost("multibind"));
  auto& ch = conn->channel();
  Exchange e{"eFoo", "topic"};
  for (const char* key : {"stock", "stock.#", "stock.us.*", "#"}) declare_bound(ch, e, "rFoo", key);
  declare_bound(ch, e, "rFoo", "stock.#");  // rebinding is idempotent

  for (const char* key :
       {"stock.us.nasdaq", "stock.europe.OSE", "stockxeuropexOSE", "candy.schleckpulver.snap_crackle"}) {
    ch.publish(raw(key), "eFoo", key);
    auto got = drain(ch, "rFoo");
    REQUIRE(got.size() == 1);
    CHECK(got.front() == key);
  }
}

TEST_CASE("the default exchange routes to the queue named by the routing key", "[memory][routing]") {
  auto conn = connect(fresh_vhost("default"));
  auto& ch = conn->channel();
  ch.declare_queue(plain("tasks"));
  ch.declare_exchange(Exchange{""});  // "declaring" the default exchange is harmless
  ch.bind_queue(plain("tasks"));      // and so is binding to it

  Envelope env = raw("hello");
  env.headers = {{"x-trace", "abc"}};
  env.priority = 5;
  env.delivery_mode = 1;
  ch.publish(env, "", "tasks");
  ch.publish(raw("nobody"), "", "no-such-queue");  // dropped, not an error

  CHECK(ch.queue_size("tasks") == 1);
  auto m = ch.get("tasks", true);
  REQUIRE(m);
  CHECK(m->body() == "hello");
  CHECK(m->exchange().empty());
  CHECK(m->routing_key() == "tasks");
  CHECK(m->content_type() == "application/data");
  CHECK(m->content_encoding() == "binary");
  CHECK(m->headers() == nlohmann::json{{"x-trace", "abc"}});
  CHECK(m->priority() == 5);
  CHECK(m->delivery_mode() == 1);
  CHECK_FALSE(m->delivery_tag().empty());
  CHECK(conn->broker()->stats().dropped == 1);
}

TEST_CASE("exchange and routing key are stamped on delivery", "[memory][routing]") {
  auto conn = connect(fresh_vhost("stamp"));
  auto& ch = conn->channel();
  declare_bound(ch, Exchange{"logs", "topic"}, "all-logs", "#");
  Envelope env = raw("line");
  env.exchange = "forged";
  env.routing_key = "forged";
  env.delivery_tag = "999";
  ch.publish(env, "logs", "app.error");
  auto m = ch.get("all-logs", true);
  REQUIRE(m);
  CHECK(m->exchange() == "logs");
  CHECK(m->routing_key() == "app.error");
  CHECK(m->delivery_tag() != "999");
}

TEST_CASE("AMQP errors: undeclared exchanges and queues, inequivalent redeclaration", "[memory][errors]") {
  auto conn = connect(fresh_vhost("errors"));
  auto& ch = conn->channel();
  auto channel_error = Catch::Predicate<respool::error>(
      [](const respool::error& e) { return is_code(e, respool::errc::channel_error); }, "a channel_error");

  CHECK_THROWS_MATCHES(ch.publish(raw("x"), "missing", "k"), respool::error, channel_error);
  CHECK_THROWS_MATCHES(ch.get("missing", true), respool::error, channel_error);
  CHECK_THROWS_MATCHES(ch.get("missing", false), respool::error, channel_error);
  CHECK_THROWS_MATCHES(ch.purge("missing"), respool::error, channel_error);
  CHECK(ch.queue_size("missing") == 0);

  ch.declare_queue(plain("q"));
  CHECK_THROWS_MATCHES(ch.bind_queue(Queue{"q", Exchange{"missing"}, "k"}), respool::error, channel_error);
  ch.declare_exchange(Exchange{"x", "direct"});
  CHECK_THROWS_MATCHES(ch.bind_queue(Queue{"nope", Exchange{"x"}, "k"}), respool::error, channel_error);
  CHECK_THROWS_MATCHES(ch.declare_queue(plain("")), respool::error, channel_error);

  // Redeclaring: identical is fine, any difference is PRECONDITION_FAILED.
  CHECK_NOTHROW(ch.declare_exchange(Exchange{"x", "direct"}));
  CHECK_THROWS_MATCHES(ch.declare_exchange(Exchange{"x", "topic"}), respool::error, channel_error);
  CHECK_THROWS_MATCHES(ch.declare_exchange(Exchange{"x", "direct", false}), respool::error, channel_error);
  CHECK_THROWS_MATCHES(ch.declare_exchange(Exchange{"x", "direct", true, true}), respool::error,
                       channel_error);
  CHECK_THROWS_MATCHES(ch.declare_exchange(Exchange{"h", "headers"}), respool::error, channel_error);
  CHECK_THROWS_MATCHES(ch.declare_exchange(Exchange{"", "fanout"}), respool::error, channel_error);

  // The messages name what is missing, and the channel stays usable afterwards.
  try {
    ch.get("missing", true);
    FAIL("get on an undeclared queue must throw");
  } catch (const respool::error& e) {
    CHECK(std::string(e.what()).find("missing") != std::string::npos);
  }
  ch.publish(raw("ok"), "", "q");
  CHECK(ch.queue_size("q") == 1);
  CHECK(ch.purge("q") == 1);
  CHECK(ch.purge("q") == 0);
}

TEST_CASE("queues are FIFO, and get on an empty queue gives nothing", "[memory]") {
  auto conn = connect(fresh_vhost("fifo"));
  auto& ch = conn->channel();
  declare_bound(ch, Exchange{"x"}, "q", "k");
  CHECK_FALSE(ch.get("q", true).has_value());
  CHECK_FALSE(ch.get("q", false).has_value());

  for (int i = 0; i < 100; ++i) ch.publish(raw(std::to_string(i)), "x", "k");
  CHECK(ch.queue_size("q") == 100);
  unsigned long previous_tag = 0;
  for (int i = 0; i < 100; ++i) {
    auto m = ch.get("q", true);
    REQUIRE(m);
    CHECK(m->body() == std::to_string(i));
    unsigned long tag = std::stoul(m->delivery_tag());
    CHECK(tag > previous_tag);
    previous_tag = tag;
  }
  CHECK_FALSE(ch.get("q", true).has_value());
  CHECK(ch.queue_size("q") == 0);
}

TEST_CASE("acknowledgements and redelivery on close", "[memory][ack]") {
  auto vhost = fresh_vhost("ack");
  auto conn = connect(vhost);
  auto& ch = conn->channel();
  auto broker = conn->broker();
  ch.declare_queue(plain("q"));
  for (int i = 1; i <= 5; ++i) ch.publish(raw("m" + std::to_string(i)), "", "q");

  SECTION("no_ack messages are never outstanding") {
    auto m = ch.get("q", true);
    REQUIRE(m);
    CHECK(m->acknowledged());
    CHECK(broker->stats().unacked == 0);
    m->ack();  // a no-op
    CHECK(broker->stats().acked == 0);
    conn->close();
    CHECK(broker->queue_size("q") == 4);
  }

  SECTION("acked messages are gone; ack is idempotent") {
    auto m = ch.get("q", false);
    REQUIRE(m);
    CHECK_FALSE(m->acknowledged());
    CHECK(broker->stats().unacked == 1);
    m->ack();
    m->ack();
    CHECK(m->acknowledged());
    auto stats = broker->stats();
    CHECK(stats.unacked == 0);
    CHECK(stats.acked == 1);
    conn->close();
    CHECK(broker->queue_size("q") == 4);
    CHECK(broker->stats().redelivered == 0);
  }

  SECTION("unacked messages go back to the front of their queue, in order, on close") {
    auto m1 = ch.get("q", false);
    auto m2 = ch.get("q", false);
    auto m3 = ch.get("q", false);
    REQUIRE((m1 && m2 && m3));
    m2->ack();
    CHECK(ch.queue_size("q") == 2);
    conn->close();
    auto stats = broker->stats();
    CHECK(stats.redelivered == 2);
    CHECK(stats.unacked == 0);
    CHECK(stats.live_connections == 0);

    // Acking after the connection closed (and after it is destroyed) is safe and does nothing.
    m1->ack();
    conn.reset();
    m3->ack();
    CHECK(broker->stats().acked == 1);

    auto other = connect(vhost);
    CHECK(drain(other->channel(), "q") == std::vector<std::string>{"m1", "m3", "m4", "m5"});
  }

  SECTION("destroying a connection closes it") {
    auto m = ch.get("q", false);
    REQUIRE(m);
    conn.reset();
    CHECK(broker->queue_size("q") == 5);
    m->ack();
    CHECK(broker->queue_size("q") == 5);
  }

  SECTION("another connection's close leaves our outstanding messages alone") {
    auto other = connect(vhost);
    auto mine = ch.get("q", false);
    auto theirs = other->channel().get("q", false);
    REQUIRE((mine && theirs));
    other->close();
    CHECK(ch.queue_size("q") == 4);  // theirs (m2) is back
    CHECK(broker->stats().unacked == 1);
    mine->ack();
    CHECK(drain(ch, "q") == std::vector<std::string>{"m2", "m3", "m4", "m5"});
  }
}

TEST_CASE("connection lifecycle", "[memory]") {
  auto vhost = fresh_vhost("lifecycle");
  memory_connection conn("localhost", vhost);
  auto broker = memory::broker_for("localhost", vhost);
  CHECK(conn.broker() == broker);
  CHECK_FALSE(conn.connected());
  CHECK(conn.id() == 0);
  CHECK(broker->stats().connects == 0);

  conn.connect();
  conn.connect();  // idempotent
  CHECK(conn.connected());
  CHECK(conn.alive());
  CHECK(conn.id() != 0);
  CHECK(broker->stats().connects == 1);
  CHECK(broker->stats().live_connections == 1);
  auto& ch = conn.channel();
  ch.declare_queue(plain("q"));

  conn.close();
  conn.close();  // idempotent
  CHECK_FALSE(conn.connected());
  CHECK_FALSE(conn.alive());
  CHECK(broker->stats().live_connections == 0);
  // A channel reference kept across close() throws connection_lost.
  try {
    ch.publish(raw("x"), "", "q");
    FAIL("publish on a closed connection must throw");
  } catch (const respool::error& e) {
    CHECK(is_code(e, respool::errc::connection_lost));
  }
  CHECK_THROWS_AS(ch.get("q", true), respool::error);
  CHECK_THROWS_AS(conn.channel(), respool::error);

  // Reconnecting attaches anew; the broker's state survived.
  conn.connect();
  CHECK(broker->stats().connects == 2);
  CHECK(conn.channel().queue_size("q") == 0);
  conn.channel().publish(raw("x"), "", "q");

  // abandon() forgets the connection without telling the broker (forked child).
  auto m = conn.channel().get("q", false);
  REQUIRE(m);
  conn.abandon();
  CHECK_FALSE(conn.connected());
  CHECK(conn.id() == 0);
  CHECK_THROWS_AS(conn.channel(), respool::error);
  conn.close();  // does nothing after abandon
  auto stats = broker->stats();
  CHECK(stats.live_connections == 1);
  CHECK(stats.unacked == 1);
  CHECK(stats.redelivered == 0);
  m->ack();
  conn.connect();
  CHECK(conn.connected());
  CHECK(broker->stats().connects == 3);
}

TEST_CASE("connections to one memory vhost share it, other vhosts are separate", "[memory]") {
  auto vhost = fresh_vhost("shared");
  auto params_a = respool::ConnectionParams::parse("memory://localhost/" + vhost);
  auto params_b = respool::ConnectionParams::parse("memory://localhost/" + vhost + "-other");
  auto factory = respool::transport::find_transport("memory");
  REQUIRE(factory);
  auto a1 = factory(params_a);
  auto a2 = factory(params_a);
  auto b = factory(params_b);
  a1->connect();
  a2->connect();
  b->connect();

  CHECK(memory::broker_for(params_a) == memory::broker_for(params_a.hostname(), params_a.virtual_host()));
  CHECK(memory::broker_for(params_a) != memory::broker_for(params_b));
  CHECK(memory::broker_for(params_a)->stats().live_connections == 2);
  CHECK(memory::broker_for(params_a)->stats().connects == 2);
  CHECK(memory::broker_for(params_b)->stats().live_connections == 1);

  Exchange x{"shared-x", "direct"};
  declare_bound(a1->channel(), x, "shared-q", "k");
  a1->channel().publish(raw("from a1"), "shared-x", "k");
  auto m = a2->channel().get("shared-q", true);
  REQUIRE(m);
  CHECK(m->body() == "from a1");

  // The other vhost has none of it.
  CHECK_THROWS_AS(b->channel().publish(raw("x"), "shared-x", "k"), respool::error);
  CHECK_THROWS_AS(b->channel().get("shared-q", true), respool::error);

  // Another host name is another broker too.
  CHECK(memory::broker_for("otherhost", params_a.virtual_host()) != memory::broker_for(params_a));

  a1->close();
  CHECK(memory::broker_for(params_a)->stats().live_connections == 1);
}

TEST_CASE("stress: 8 publishers and 4 consumers on a topic exchange, every message exactly once",
          "[memory][concurrency]") {
  constexpr int publishers = 8;
  constexpr int consumers = 4;
  constexpr int per_publisher = 10000;
  constexpr int total = publishers * per_publisher;

  const auto vhost = fresh_vhost("stress");
  {
    auto setup = connect(vhost);
    auto& ch = setup->channel();
    Exchange x{"stress", "topic"};
    // Overlapping bindings: each message must still reach "work" once.
    for (const char* key : {"stress.#", "*.*.*", "#", "stress.*.even", "stress.*.odd"})
      declare_bound(ch, x, "work", key);
    declare_bound(ch, x, "elsewhere", "other.#");
  }

  std::vector<std::atomic<int>> seen(total);
  for (auto& s : seen) s.store(0);
  std::atomic<int> received{0};
  std::atomic<int> explicitly_acked{0};
  std::atomic<int> publishers_done{0};
  std::atomic<int> failures{0};
  gate start;

  std::vector<std::thread> threads;
  for (int p = 0; p < publishers; ++p) {
    threads.emplace_back([&, p] {
      try {
        auto conn = connect(vhost);
        auto& ch = conn->channel();
        start.wait();
        for (int i = 0; i < per_publisher; ++i) {
          int seq = p * per_publisher + i;
          std::string key = "stress.p" + std::to_string(p) + (i % 2 == 0 ? ".even" : ".odd");
          ch.publish(raw(std::to_string(seq)), "stress", key);
        }
      } catch (...) {
        failures.fetch_add(1);
      }
      publishers_done.fetch_add(1);
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      try {
        auto conn = connect(vhost);
        auto& ch = conn->channel();
        start.wait();
        for (;;) {
          // Read "done" before get(): if every publisher had finished and the
          // queue is then empty, nothing more can arrive.
          bool done = publishers_done.load() == publishers;
          const bool no_ack = c % 2 == 0;  // half the consumers ack explicitly
          auto m = ch.get("work", no_ack);
          if (!m) {
            if (done) break;
            std::this_thread::yield();
            continue;
          }
          int seq = std::stoi(m->body());
          if (seq < 0 || seq >= total) {
            failures.fetch_add(1);
            continue;
          }
          seen[static_cast<std::size_t>(seq)].fetch_add(1);
          if (!no_ack) {
            m->ack();
            explicitly_acked.fetch_add(1);
          }
          received.fetch_add(1);
        }
      } catch (...) {
        failures.fetch_add(1);
      }
    });
  }
  start.open();
  for (auto& t : threads) t.join();

  CHECK(failures.load() == 0);
  CHECK(received.load() == total);
  int missing = 0, duplicated = 0;
  for (auto& s : seen) {
    if (s.load() == 0) ++missing;
    if (s.load() > 1) ++duplicated;
  }
  CHECK(missing == 0);
  CHECK(duplicated == 0);

  auto broker = memory::broker_for("localhost", vhost);
  auto stats = broker->stats();
  CHECK(stats.published == static_cast<std::size_t>(total));
  CHECK(stats.routed == static_cast<std::size_t>(total));
  CHECK(stats.delivered == static_cast<std::size_t>(total));
  CHECK(stats.acked == static_cast<std::size_t>(explicitly_acked.load()));
  CHECK(stats.unacked == 0);
  CHECK(stats.live_connections == 0);
  CHECK(broker->queue_size("work") == 0);
  CHECK(broker->queue_size("elsewhere") == 0);
}

TEST_CASE("close from another thread while the channel is in use loses nothing", "[memory][concurrency]") {
  constexpr int messages = 5000;
  const auto vhost = fresh_vhost("close-race");
  auto setup = connect(vhost);
  setup->channel().declare_queue(plain("q"));
  for (int i = 0; i < messages; ++i) setup->channel().publish(raw(std::to_string(i)), "", "q");

  auto victim = connect(vhost);
  std::atomic<int> lost_connection{0};
  gate start;
  std::thread consumer([&] {
    start.wait();
    try {
      auto& ch = victim->channel();
      while (auto m = ch.get("q", false)) {
        m->ack();  // a no-op if the close won the race and put it back
      }
    } catch (const respool::error& e) {
      if (is_code(e, respool::errc::connection_lost)) lost_connection.fetch_add(1);
    }
  });
  std::thread closer([&] {
    start.wait();
    victim->close();
  });
  start.open();
  consumer.join();
  closer.join();

  // Whether the consumer or the closer won, every message is either acked or back in the queue.
  auto broker = memory::broker_for("localhost", vhost);
  auto stats = broker->stats();
  CHECK(stats.acked + broker->queue_size("q") == static_cast<std::size_t>(messages));
  CHECK(stats.unacked == 0);
  CHECK(stats.live_connections == 1);  // `setup`
  CHECK(lost_connection.load() <= 1);
}
