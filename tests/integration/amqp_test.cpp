// Integration tests of the amqp:// transport (respool/transport/amqp.hpp)
// against a live RabbitMQ (RESPOOL_AMQP_URL, started by tests/run), and of its
// wire compatibility with Python kombu (tests/integration/kombu_amqp_peer.py,
// run with /usr/bin/python3 or $RESPOOL_PYTHON).
//
// Environment (from tests/run): RESPOOL_AMQP_URL; RESPOOL_AMQP_STOP /
// RESPOOL_AMQP_START (scripts) for the broker-outage test; RESPOOL_AMQP_CTL
// (rabbitmqctl) for the memory-alarm (read_timeout) test; optional
// RESPOOL_AMQPS_URL (a TLS listener, e.g. ...?ssl_ca_certs=/path/ca.pem) for
// the TLS test. Every test is skipped with a warning when its variables are
// not set. Queue and exchange names carry the pid; they are deleted afterwards.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <respool/transport/amqp.hpp>
#include <string>
#include <thread>
#include <vector>

#include "respool/detail/codec.hpp"

namespace {

using nlohmann::json;
using respool::ConnectionParams;
using respool::Envelope;
using respool::errc;
using respool::Exchange;
using respool::Queue;
using respool::transport::amqp_connection;
using respool::transport::amqp_error;

std::optional<std::string> env(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return std::nullopt;
  return std::string(value);
}

#define AMQP_URL_OR_SKIP(var)                                  \
  const auto var##_opt = env("RESPOOL_AMQP_URL");              \
  if (!var##_opt) {                                            \
    WARN("skipped: RESPOOL_AMQP_URL not set (run tests/run)"); \
    return;                                                    \
  }                                                            \
  const std::string var = *var##_opt

std::string with_option(const std::string& url, const std::string& option) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + option;
}

std::string unique(const std::string& what) {
  static int counter = 0;
  return "respool.amqp_test." + what + "." + std::to_string(::getpid()) + "." + std::to_string(++counter);
}

std::unique_ptr<amqp_connection> open(const std::string& url) {
  auto c = std::make_unique<amqp_connection>(ConnectionParams::parse(url));
  c->connect();
  return c;
}

// Deletes the queues and exchanges a test made, on a connection of its own.
struct cleanup {
  std::string url;
  std::vector<std::string> queues, exchanges;
  ~cleanup() {
    try {
      auto c = open(url);
      for (const auto& q : queues) try {
          c->channel().delete_queue(q);
        } catch (...) {
        }
      for (const auto& x : exchanges) try {
          c->channel().delete_exchange(x);
        } catch (...) {
        }
    } catch (...) {
    }
  }
};

// A queue bound to a direct exchange of its own, both unique to this run.
Queue declare_pair(amqp_connection& c, cleanup& names, const std::string& what,
                   const std::string& type = "direct") {
  Queue q{unique(what + ".q"), Exchange{unique(what + ".x"), type}, "rk." + what};
  names.queues.push_back(q.name);
  names.exchanges.push_back(q.exchange.name);
  c.channel().declare_exchange(q.exchange);
  c.channel().declare_queue(q);
  c.channel().bind_queue(q);
  return q;
}

// The envelopes respool's Producer builds (see docs/transports.md).
Envelope json_envelope(const json& payload) {
  Envelope e;
  e.body = payload.dump();
  e.content_type = "application/json";
  e.content_encoding = "utf-8";
  return e;
}
Envelope zlib_envelope(const json& payload) {
  Envelope e = json_envelope(payload);
  e.body = respool::detail::zlib_compress(payload.dump());
  e.headers["compression"] = "application/x-gzip";
  return e;
}
Envelope raw_envelope(std::string bytes) {
  Envelope e;
  e.body = std::move(bytes);
  e.content_type = "application/data";
  e.content_encoding = "binary";
  return e;
}

std::string hex(const std::string& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// ---- the kombu peer ----

std::string python() { return env("RESPOOL_PYTHON").value_or("/usr/bin/python3"); }

std::string peer_script() {
  if (auto p = env("RESPOOL_KOMBU_AMQP_PEER")) return *p;
  std::string file = __FILE__;
  auto slash = file.rfind('/');
  return (slash == std::string::npos ? std::string(".") : file.substr(0, slash)) + "/kombu_amqp_peer.py";
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool kombu_available() {
  static const bool available = [] {
    std::string cmd = shell_quote(python()) + " -c 'import kombu, amqp' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0 && ::access(peer_script().c_str(), R_OK) == 0;
  }();
  return available;
}

struct peer_result {
  int status = -1;
  std::vector<json> lines;
};

peer_result run_peer(const std::vector<std::string>& args) {
  std::string cmd = shell_quote(python()) + " " + shell_quote(peer_script());
  for (const auto& a : args) cmd += " " + shell_quote(a);
  peer_result r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::string line;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe)) {
    line += buffer;
    if (!line.empty() && line.back() == '\n') {
      r.lines.push_back(json::parse(line));
      line.clear();
    }
  }
  if (!line.empty()) r.lines.push_back(json::parse(line));
  int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

#define KOMBU_OR_SKIP()                                                             \
  if (!kombu_available()) {                                                         \
    WARN("skipped: python3 with kombu, or " << peer_script() << ", not available"); \
    return;                                                                         \
  }

std::uint16_t refused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);  // nothing listens there now
  return ntohs(addr.sin_port);
}

template <class F>
amqp_error catch_amqp_error(F&& f) {
  try {
    f();
  } catch (const amqp_error& e) {
    return e;
  }
  FAIL("no amqp_error was thrown");
  throw std::logic_error("unreachable");
}

}  // namespace

// ---------------------------------------------------------------- registry --

TEST_CASE("the header registers amqp:// and amqps://", "[amqp]") {
  CHECK(respool::transport::amqp_registered);
  auto factory = respool::transport::find_transport("amqp");
  REQUIRE(factory);
  CHECK(respool::transport::find_transport("amqps"));
  auto impl = factory(ConnectionParams::parse("amqp://guest:guest@127.0.0.1:1//"));
  REQUIRE(impl);
  CHECK_FALSE(impl->connected());
  CHECK_FALSE(impl->alive());
  CHECK(dynamic_cast<amqp_connection*>(impl.get()) != nullptr);
  impl->close();    // never connected: nothing to do
  impl->abandon();  // likewise
}

TEST_CASE("malformed options are rejected when the connection is made", "[amqp]") {
  for (const char* url : {"amqp://h/?heartbeat=abc", "amqp://h/?heartbeat=-1", "amqp://h/?connect_timeout=x",
                          "amqp://h/?frame_max=12", "amqps://h/?ssl_cert_reqs=maybe"}) {
    INFO(url);
    try {
      amqp_connection c(ConnectionParams::parse(url));
      FAIL("accepted");
    } catch (const respool::error& e) {
      CHECK(e.code() == errc::invalid_url);
    }
  }
}

// ---------------------------------------------------------------- connect --

TEST_CASE("connect, liveness and close", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto c = open(url);
  CHECK(c->connected());
  CHECK(c->alive());
  CHECK(c->heartbeat() == 0);  // kombu's default: heartbeats off
  c->connect();                // no-op when connected
  CHECK(c->alive());
  c->close();
  CHECK_FALSE(c->connected());
  CHECK_FALSE(c->alive());
  c->close();  // idempotent
  auto e = catch_amqp_error([&] { c->channel().queue_size("x"); });
  CHECK(e.code() == errc::connection_lost);
  c->connect();  // a closed connection can be opened again
  CHECK(c->alive());
}

TEST_CASE("a wrong password fails with connection_failed, naming the URI without the password",
          "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto good = ConnectionParams::parse(url);
  const std::string secret = "not-the-Password-42";
  ConnectionParams bad(good.transport(), good.hostname(), good.port(), good.userid(), secret,
                       good.virtual_host());
  amqp_connection c(bad);
  auto e = catch_amqp_error([&] { c.connect(); });
  CHECK(e.code() == errc::connection_failed);
  CHECK(e.reply_code() == 403);
  const std::string what = e.what();
  CHECK_THAT(what, Catch::Contains(bad.as_uri()));
  CHECK_THAT(what, Catch::Contains("ACCESS_REFUSED"));
  CHECK(what.find(secret) == std::string::npos);
  CHECK_FALSE(c.connected());
}

TEST_CASE("an unknown virtual host fails with connection_failed (NOT_ALLOWED)", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto good = ConnectionParams::parse(url);
  ConnectionParams bad(good.transport(), good.hostname(), good.port(), good.userid(), good.password(),
                       "respool-no-such-vhost");
  amqp_connection c(bad);
  auto e = catch_amqp_error([&] { c.connect(); });
  CHECK(e.code() == errc::connection_failed);
  CHECK(e.reply_code() == 530);
  CHECK_THAT(std::string(e.what()), Catch::Contains(bad.as_uri()));
  CHECK_THAT(std::string(e.what()), Catch::Contains("NOT_ALLOWED"));
  CHECK(std::string(e.what()).find(good.password() + "@") == std::string::npos);
}

TEST_CASE("a refused connection fails with connection_failed", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto good = ConnectionParams::parse(url);
  ConnectionParams bad(good.transport(), "127.0.0.1", refused_port(), good.userid(), "pw-secret",
                       good.virtual_host(), {{"connect_timeout", "2"}});
  amqp_connection c(bad);
  auto start = std::chrono::steady_clock::now();
  auto e = catch_amqp_error([&] { c.connect(); });
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
  CHECK(e.code() == errc::connection_failed);
  CHECK_THAT(std::string(e.what()), Catch::Contains(bad.as_uri()));
  CHECK(std::string(e.what()).find("pw-secret") == std::string::npos);
  CHECK_FALSE(c.connected());
}

TEST_CASE("amqps:// to a plain AMQP port fails cleanly", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto good = ConnectionParams::parse(url);
  ConnectionParams tls("amqps", good.hostname(), good.port(), good.userid(), good.password(),
                       good.virtual_host(), {{"connect_timeout", "3"}});
  amqp_connection c(tls);
  auto e = catch_amqp_error([&] { c.connect(); });
  CHECK(e.code() == errc::connection_failed);
  CHECK_THAT(std::string(e.what()), Catch::Contains("TLS"));
}

TEST_CASE("amqps:// with a TLS listener (RESPOOL_AMQPS_URL)", "[amqp][integration]") {
  auto url = env("RESPOOL_AMQPS_URL");
  if (!url) {
    WARN("skipped: RESPOOL_AMQPS_URL not set (a RabbitMQ TLS listener, with ?ssl_ca_certs=...)");
    return;
  }
  cleanup names{*url, {}, {}};
  auto c = open(*url);
  CHECK(c->alive());
  Queue q = declare_pair(*c, names, "tls");
  c->channel().publish(json_envelope({{"tls", true}}), q.exchange.name, q.routing_key);
  auto m = c->channel().get(q.name, true);
  REQUIRE(m);
  CHECK(m->payload() == json{{"tls", true}});

  // a forked child's close()/destructor must not even send a TLS close_notify
  for (int mode = 0; mode < 2; ++mode) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (mode == 0)
        c->close();
      else
        c.reset();
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(c->alive());
    c->channel().publish(json_envelope(mode), q.exchange.name, q.routing_key);
    auto after = c->channel().get(q.name, true);
    REQUIRE(after);
    CHECK(after->payload() == mode);
  }
  c->close();
}

// ---------------------------------------------------------------- declare --

TEST_CASE("declarations use kombu's defaults", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "defaults");

  SECTION("redeclaring with the same arguments is fine") {
    c->channel().declare_exchange(q.exchange);
    c->channel().declare_queue(q);
    c->channel().bind_queue(q);
  }
  SECTION("the exchange is durable and not auto-delete") {
    auto e = catch_amqp_error([&] {
      c->channel().declare_exchange(Exchange{q.exchange.name, "direct", false});
    });
    CHECK(e.code() == errc::channel_error);
    CHECK(e.reply_code() == 406);
    CHECK_THAT(e.reply_text(), Catch::Contains("durable"));
    auto e2 = catch_amqp_error([&] {
      c->channel().declare_exchange(Exchange{q.exchange.name, "direct", true, true});
    });
    CHECK_THAT(e2.reply_text(), Catch::Contains("auto_delete"));
  }
  SECTION("kombu's own declaration (durable, not exclusive, not auto-delete) is equivalent") {
    KOMBU_OR_SKIP();
    auto r = run_peer({url, "declare", q.name, q.exchange.name, "direct", q.routing_key});
    REQUIRE(r.status == 0);
    REQUIRE(r.lines.size() == 1);
    CHECK(r.lines[0]["ok"] == true);
    // and kombu sees the inequivalence we see
    auto r2 = run_peer({url, "declare", q.name, q.exchange.name, "fanout", q.routing_key});
    REQUIRE(r2.lines.size() == 1);
    CHECK(r2.lines[0]["ok"] == false);
  }
  CHECK(c->alive());
}

TEST_CASE("a channel error throws channel_error with the broker's text and the connection stays usable",
          "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "chanerr");

  auto e = catch_amqp_error([&] { c->channel().declare_exchange(Exchange{q.exchange.name, "fanout"}); });
  CHECK(e.code() == errc::channel_error);
  CHECK(e.reply_code() == 406);
  CHECK_THAT(e.reply_text(), Catch::Contains("PRECONDITION_FAILED"));
  CHECK_THAT(e.reply_text(), Catch::Contains("inequivalent arg 'type'"));
  CHECK_THAT(std::string(e.what()), Catch::Contains(c->params().as_uri()));
  CHECK(c->connected());
  CHECK(c->alive());

  // the reopened channel still publishes (with confirms) and gets
  c->channel().publish(json_envelope({{"after", "error"}}), q.exchange.name, q.routing_key);
  auto m = c->channel().get(q.name, true);
  REQUIRE(m);
  CHECK(m->payload()["after"] == "error");

  // a missing queue: NOT_FOUND for get and purge, 0 for queue_size
  const std::string missing = unique("missing");
  auto e404 = catch_amqp_error([&] { c->channel().get(missing, true); });
  CHECK(e404.code() == errc::channel_error);
  CHECK(e404.reply_code() == 404);
  CHECK(c->channel().queue_size(missing) == 0);
  CHECK(catch_amqp_error([&] { c->channel().purge(missing); }).reply_code() == 404);
  CHECK(c->alive());
  CHECK(c->channel().queue_size(q.name) == 0);
}

TEST_CASE("an error the broker treats as a connection error drops the connection and connect() recovers",
          "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto c = open(url);
  const std::string name = unique("badtype.x");
  // RabbitMQ answers an unknown exchange type with connection.close (503 COMMAND_INVALID)
  auto e = catch_amqp_error([&] { c->channel().declare_exchange(Exchange{name, "no-such-type"}); });
  CHECK(e.code() == errc::channel_error);
  CHECK(e.reply_code() == 503);
  CHECK_FALSE(c->connected());
  CHECK_FALSE(c->alive());
  CHECK(catch_amqp_error([&] { c->channel().queue_size("x"); }).code() == errc::connection_lost);
  c->connect();
  CHECK(c->alive());
}

TEST_CASE("publishing to a missing exchange is a channel error", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto c = open(url);
  auto e = catch_amqp_error([&] {
    c->channel().publish(json_envelope({{"a", 1}}), unique("nowhere.x"), "rk");
  });
  CHECK(e.code() == errc::channel_error);
  CHECK(e.reply_code() == 404);
  CHECK(c->alive());
}

// ---------------------------------------------------------------- publish/get --

TEST_CASE("publish and get round-trip every property", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "roundtrip");
  auto& ch = c->channel();

  Envelope e = json_envelope({{"hello", "wörld"}, {"n", 3}});
  e.headers = {{"s", "text"},
               {"i", 42},
               {"neg", -5},
               {"big", 1099511627776LL},
               {"bigneg", -1099511627776LL},
               {"t", true},
               {"f", false},
               {"d", 2.5},
               {"null", nullptr},
               {"obj", {{"inner", {{"deep", 1}}}, {"s", "x"}}},
               {"arr", {1, "two", json{{"three", 3}}}}};
  e.priority = 7;
  e.delivery_mode = 1;
  ch.publish(e, q.exchange.name, q.routing_key);
  ch.publish(raw_envelope(std::string("\0\1\2\xff", 4)), q.exchange.name, q.routing_key);
  CHECK(ch.queue_size(q.name) == 2);

  auto m = ch.get(q.name, true);
  REQUIRE(m);
  CHECK(m->body() == e.body);
  CHECK(m->payload() == json{{"hello", "wörld"}, {"n", 3}});
  CHECK(m->content_type() == "application/json");
  CHECK(m->content_encoding() == "utf-8");
  CHECK(m->headers() == e.headers);
  CHECK(m->priority() == 7);
  CHECK(m->delivery_mode() == 1);
  CHECK(m->exchange() == q.exchange.name);
  CHECK(m->routing_key() == q.routing_key);
  CHECK_FALSE(m->delivery_tag().empty());
  CHECK(m->acknowledged());  // no_ack: nothing to ack

  auto raw = ch.get(q.name, true);
  REQUIRE(raw);
  CHECK(raw->body() == std::string("\0\1\2\xff", 4));
  CHECK(raw->content_type() == "application/data");
  CHECK(raw->content_encoding() == "binary");
  CHECK(raw->headers() == json::object());
  CHECK(raw->delivery_mode() == 2);
  CHECK(raw->priority() == 0);

  CHECK_FALSE(ch.get(q.name, true));
  CHECK(ch.queue_size(q.name) == 0);
}

TEST_CASE("the default exchange routes by queue name", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q{unique("default.q"), Exchange{""}, ""};
  names.queues.push_back(q.name);
  c->channel().declare_exchange(q.exchange);  // "" is never declared
  c->channel().declare_queue(q);
  c->channel().bind_queue(q);  // nor bound to
  c->channel().publish(json_envelope(1), "", q.name);
  auto m = c->channel().get(q.name, true);
  REQUIRE(m);
  CHECK(m->exchange().empty());
  CHECK(m->routing_key() == q.name);
}

TEST_CASE("an unroutable message is dropped, not an error", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "unroutable");
  c->channel().publish(json_envelope({{"lost", true}}), q.exchange.name, "no-binding-for-this-key");
  c->channel().publish(json_envelope({{"lost", true}}), "", unique("no-such-queue"));
  CHECK(c->channel().queue_size(q.name) == 0);
  CHECK(c->alive());
}

TEST_CASE("fanout and topic exchanges", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  auto& ch = c->channel();
  Exchange fan{unique("fan.x"), "fanout"};
  Exchange topic{unique("topic.x"), "topic"};
  names.exchanges = {fan.name, topic.name};
  Queue a{unique("a.q"), fan, ""}, b{unique("b.q"), fan, ""}, t{unique("t.q"), topic, "stock.#"};
  for (auto* q : {&a, &b, &t}) {
    names.queues.push_back(q->name);
    ch.declare_exchange(q->exchange);
    ch.declare_queue(*q);
    ch.bind_queue(*q);
  }
  ch.publish(json_envelope(1), fan.name, "ignored");
  ch.publish(json_envelope(2), topic.name, "stock.usd.nyse");
  ch.publish(json_envelope(3), topic.name, "bond.usd");
  CHECK(ch.queue_size(a.name) == 1);
  CHECK(ch.queue_size(b.name) == 1);
  CHECK(ch.queue_size(t.name) == 1);
  CHECK(ch.get(t.name, true)->payload() == 2);
}

TEST_CASE("a body larger than a frame", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "large");
  std::string body(3 * 1024 * 1024 + 7, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 131) ^ (i >> 9));
  c->channel().publish(raw_envelope(body), q.exchange.name, q.routing_key);
  auto m = c->channel().get(q.name, true);
  REQUIRE(m);
  CHECK(m->body().size() == body.size());
  CHECK(m->body() == body);
}

TEST_CASE("invalid headers and properties throw encoding_error before anything is sent",
          "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "encoding");
  Envelope e = json_envelope(1);
  e.headers = json::array({1, 2});
  try {
    c->channel().publish(e, q.exchange.name, q.routing_key);
    FAIL("published non-object headers");
  } catch (const respool::error& err) {
    CHECK(err.code() == errc::encoding_error);
  }
  e = json_envelope(1);
  e.headers[std::string(300, 'k')] = 1;
  CHECK_THROWS_AS(c->channel().publish(e, q.exchange.name, q.routing_key), respool::error);
  e = json_envelope(1);
  e.priority = 300;
  CHECK_THROWS_AS(c->channel().publish(e, q.exchange.name, q.routing_key), respool::error);
  CHECK(c->alive());
  CHECK(c->channel().queue_size(q.name) == 0);
  c->channel().publish(json_envelope(1), q.exchange.name, q.routing_key);
  CHECK(c->channel().queue_size(q.name) == 1);
}

// ---------------------------------------------------------------- acks --

TEST_CASE("get with no_ack=false needs ack() and unacked messages come back", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "ack");
  for (int i = 1; i <= 2; ++i) c->channel().publish(json_envelope(i), q.exchange.name, q.routing_key);

  {
    auto m = c->channel().get(q.name, false);
    REQUIRE(m);
    CHECK(m->payload() == 1);
    CHECK_FALSE(m->acknowledged());
    m->ack();
    CHECK(m->acknowledged());
    m->ack();  // at most once
  }
  auto unacked = c->channel().get(q.name, false);
  REQUIRE(unacked);
  CHECK(unacked->payload() == 2);
  CHECK(c->channel().queue_size(q.name) == 0);  // outstanding, not ready
  c->close();

  // the connection is gone: ack() throws connection_lost, nothing crashes
  auto e = catch_amqp_error([&] { unacked->ack(); });
  CHECK(e.code() == errc::connection_lost);

  // and the broker gave the unacked message back
  auto c2 = open(url);
  auto again = c2->channel().get(q.name, false);
  REQUIRE(again);
  CHECK(again->payload() == 2);

  // a channel error reopens the channel: older delivery tags cannot be acked
  CHECK_THROWS(c2->channel().declare_exchange(Exchange{q.exchange.name, "topic"}));
  CHECK(catch_amqp_error([&] { again->ack(); }).code() == errc::connection_lost);

  // ack() after the connection object itself was destroyed
  auto m3 = c2->channel().get(q.name, false);
  REQUIRE(m3);
  c2.reset();
  CHECK(catch_amqp_error([&] { m3->ack(); }).code() == errc::connection_lost);
}

TEST_CASE("purge and queue_size", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "purge");
  for (int i = 0; i < 5; ++i) c->channel().publish(json_envelope(i), q.exchange.name, q.routing_key);
  CHECK(c->channel().queue_size(q.name) == 5);
  CHECK(c->channel().purge(q.name) == 5);
  CHECK(c->channel().queue_size(q.name) == 0);
  CHECK(c->channel().purge(q.name) == 0);
}

// ---------------------------------------------------------------- liveness / fork --

TEST_CASE("abandon() in a forked child leaves the parent's session intact", "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "fork");

  for (int mode = 0; mode < 3; ++mode) {
    INFO("mode " << mode);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int rc = 0;
      if (c->alive()) rc |= 1;  // inherited: never alive in the child
      if (mode == 0) {
        c->abandon();
        if (c->connected()) rc |= 2;
      } else if (mode == 1) {
        c->close();  // a close in the child abandons too
      } else {
        c.reset();  // so does the destructor
      }
      ::_exit(rc);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);

    // the parent's connection and channel still work: nothing was written to them
    CHECK(c->alive());
    c->channel().publish(json_envelope(mode), q.exchange.name, q.routing_key);
    auto m = c->channel().get(q.name, false);
    REQUIRE(m);
    CHECK(m->payload() == mode);
    m->ack();
  }
}

TEST_CASE("heartbeats are negotiated and serviced by alive() and an idle connection dies",
          "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto c = open(with_option(url, "heartbeat=1"));
  CHECK(c->heartbeat() == 1);

  // serviced: alive() sends heartbeats when due
  for (int i = 0; i < 16; ++i) {
    // Not synchronisation: time passing is what is tested (heartbeats fall due).
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    REQUIRE(c->alive());
  }
  CHECK(c->channel().queue_size("amq.respool-none") == 0);

  // idle for more than 2 heartbeat intervals: the broker drops it, alive() sees it
  // Not synchronisation: the connection must sit idle past two heartbeat intervals.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  CHECK_FALSE(c->alive());
  CHECK_FALSE(c->connected());
}

TEST_CASE("a publish the broker does not confirm within read_timeout throws connection_lost",
          "[amqp][integration]") {
  AMQP_URL_OR_SKIP(url);
  auto ctl = env("RESPOOL_AMQP_CTL");
  if (!ctl) {
    WARN("skipped: RESPOOL_AMQP_CTL not set (run tests/run)");
    return;
  }
  cleanup names{url, {}, {}};
  auto c = open(with_option(url, "read_timeout=1.5"));
  Queue q = declare_pair(*c, names, "blocked");
  c->channel().publish(json_envelope(1), q.exchange.name, q.routing_key);  // confirmed in time

  // A memory alarm makes RabbitMQ stop reading from publishing connections.
  struct watermark_guard {
    std::string ctl;
    ~watermark_guard() {
      (void)std::system((ctl + " set_vm_memory_high_watermark 0.4 >/dev/null 2>&1").c_str());
    }
  } guard{*ctl};
  REQUIRE(std::system((*ctl + " set_vm_memory_high_watermark 0 >/dev/null 2>&1").c_str()) == 0);

  auto start = std::chrono::steady_clock::now();
  auto e = catch_amqp_error([&] { c->channel().publish(json_envelope(2), q.exchange.name, q.routing_key); });
  auto waited = std::chrono::steady_clock::now() - start;
  CHECK(e.code() == errc::connection_lost);
  CHECK_THAT(std::string(e.what()), Catch::Contains("read_timeout"));
  CHECK(waited >= std::chrono::milliseconds(1400));
  CHECK(waited < std::chrono::seconds(10));
  CHECK_FALSE(c->connected());
}

// ---------------------------------------------------------------- kombu interop --

TEST_CASE("kombu decodes what respool publishes", "[amqp][integration][kombu]") {
  AMQP_URL_OR_SKIP(url);
  KOMBU_OR_SKIP();
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "to_kombu");
  auto& ch = c->channel();

  const json payload = {{"kind", "json"}, {"text", "héllo"}, {"list", {1, 2, 3}}};
  const std::string raw(
      "\x00\x01\x02"
      "binary\xff",
      10);
  Envelope with_headers = json_envelope({{"kind", "headers"}});
  with_headers.headers = {{"x-str", "vé"},
                          {"x-int", 42},
                          {"x-big", 1099511627776LL},
                          {"x-bigneg", -1099511627776LL},
                          {"x-bool", true},
                          {"x-float", 2.5},
                          {"x-nested", {{"a", 1}, {"b", "c"}}},
                          {"x-list", {1, "two"}}};
  Envelope prioritised = json_envelope({{"kind", "priority"}});
  prioritised.priority = 5;
  Envelope transient = json_envelope({{"kind", "transient"}});
  transient.delivery_mode = 1;

  ch.publish(json_envelope(payload), q.exchange.name, q.routing_key);
  ch.publish(zlib_envelope(payload), q.exchange.name, q.routing_key);
  ch.publish(raw_envelope(raw), q.exchange.name, q.routing_key);
  ch.publish(with_headers, q.exchange.name, q.routing_key);
  ch.publish(prioritised, q.exchange.name, q.routing_key);
  ch.publish(transient, q.exchange.name, q.routing_key);

  auto r = run_peer({url, "consume", q.name, "6", "10"});
  REQUIRE(r.status == 0);
  REQUIRE(r.lines.size() == 6);
  for (const auto& line : r.lines) {
    CHECK(line["delivery_info"]["exchange"] == q.exchange.name);
    CHECK(line["delivery_info"]["routing_key"] == q.routing_key);
  }
  // json
  CHECK(r.lines[0]["body"] == payload);
  CHECK(r.lines[0]["content_type"] == "application/json");
  CHECK(r.lines[0]["content_encoding"] == "utf-8");
  CHECK(r.lines[0]["headers"] == json::object());
  CHECK(r.lines[0]["priority"] == 0);
  CHECK(r.lines[0]["delivery_mode"] == 2);
  // json + zlib: kombu decompresses (compression header) and decodes
  CHECK(r.lines[1]["body"] == payload);
  CHECK(r.lines[1]["headers"] == json{{"compression", "application/x-gzip"}});
  CHECK(r.lines[1]["bytes_hex"] == hex(payload.dump()));
  // raw bytes
  CHECK(r.lines[2]["body_hex"] == hex(raw));
  CHECK(r.lines[2]["content_type"] == "application/data");
  CHECK(r.lines[2]["content_encoding"] == "binary");
  // headers of every JSON type
  CHECK(r.lines[3]["body"] == json{{"kind", "headers"}});
  CHECK(r.lines[3]["headers"] == with_headers.headers);
  // priority, delivery mode
  CHECK(r.lines[4]["priority"] == 5);
  CHECK(r.lines[5]["delivery_mode"] == 1);
  CHECK(c->channel().queue_size(q.name) == 0);
}

TEST_CASE("respool decodes what kombu publishes", "[amqp][integration][kombu]") {
  AMQP_URL_OR_SKIP(url);
  KOMBU_OR_SKIP();
  cleanup names{url, {}, {}};
  auto c = open(url);
  Queue q = declare_pair(*c, names, "from_kombu");

  auto r = run_peer({url, "publish", q.exchange.name, q.routing_key});
  REQUIRE(r.status == 0);
  REQUIRE(r.lines.size() == 1);
  CHECK(r.lines[0]["published"] == json{"json", "zlib", "raw", "headers", "priority", "text"});
  CHECK(c->channel().queue_size(q.name) == 6);

  const json payload = {{"kind", "json"}, {"n", 1}, {"text", "héllo"}, {"list", {1, 2, 3}}};
  auto next = [&] {
    auto m = c->channel().get(q.name, false);
    REQUIRE(m);
    CHECK(m->exchange() == q.exchange.name);
    CHECK(m->routing_key() == q.routing_key);
    CHECK(m->delivery_mode() == 2);
    m->ack();
    return std::move(*m);
  };

  auto json_message = next();
  CHECK(json_message.content_type() == "application/json");
  CHECK(json_message.content_encoding() == "utf-8");
  CHECK(json_message.headers() == json::object());
  CHECK(json_message.priority() == 0);
  CHECK(json_message.payload() == payload);

  auto zlib_message = next();
  CHECK(zlib_message.headers() == json{{"compression", "application/x-gzip"}});
  CHECK(zlib_message.body() != zlib_message.decoded_body());  // compressed on the wire
  CHECK(zlib_message.payload() == payload);

  auto raw_message = next();
  CHECK(raw_message.content_type() == "application/data");
  CHECK(raw_message.content_encoding() == "binary");
  CHECK(raw_message.body() == std::string("\x00\x01\x02"
                                          "binary\xff",
                                          10));

  auto headers_message = next();
  CHECK(headers_message.payload() == json{{"kind", "headers"}});
  CHECK(headers_message.headers() == json{{"x-str", "vé"},
                                          {"x-int", 42},
                                          {"x-big", 1099511627776LL},
                                          {"x-neg", -7},
                                          {"x-bigneg", -1099511627776LL},
                                          {"x-bool", true},
                                          {"x-float", 2.5},
                                          {"x-nested", {{"a", 1}, {"b", "c"}}},
                                          {"x-list", {1, "two"}}});

  auto priority_message = next();
  CHECK(priority_message.priority() == 5);

  auto text_message = next();
  CHECK(text_message.content_type() == "text/plain");
  CHECK(text_message.body() == "plain text é");
  CHECK(text_message.payload() == "plain text é");

  CHECK_FALSE(c->channel().get(q.name, true));
}

// ---------------------------------------------------------------- broker outage --
// Last: stops and restarts the broker (tests run one at a time, see tests/CMakeLists.txt).

TEST_CASE("a broker that goes away makes publish throw connection_lost instead of losing messages",
          "[amqp][integration][outage]") {
  AMQP_URL_OR_SKIP(url);
  auto stop = env("RESPOOL_AMQP_STOP");
  auto start = env("RESPOOL_AMQP_START");
  if (!stop || !start) {
    WARN("skipped: RESPOOL_AMQP_STOP / RESPOOL_AMQP_START not set (run tests/run)");
    return;
  }
  auto publisher = open(url);
  auto idle = open(url);
  const std::string queue = unique("outage.q");
  publisher->channel().declare_queue(Queue{queue, Exchange{""}, ""});
  publisher->channel().publish(json_envelope(1), "", queue);

  REQUIRE(std::system(stop->c_str()) == 0);
  struct restart_guard {  // restarts the broker if the test ends early
    std::string script;
    ~restart_guard() {
      if (!script.empty()) (void)std::system(script.c_str());
    }
  } guard{*start};

  CHECK_FALSE(idle->alive());
  CHECK_FALSE(idle->connected());

  auto e = catch_amqp_error([&] { publisher->channel().publish(json_envelope(2), "", queue); });
  CHECK(e.code() == errc::connection_lost);
  CHECK_THAT(std::string(e.what()), Catch::Contains(publisher->params().as_uri()));
  CHECK_FALSE(publisher->connected());
  CHECK(catch_amqp_error([&] { publisher->channel().publish(json_envelope(3), "", queue); }).code() ==
        errc::connection_lost);

  // reconnecting fails cleanly while the broker is down...
  CHECK(catch_amqp_error([&] { publisher->connect(); }).code() == errc::connection_failed);

  // ...and works once it is back
  int started = std::system(start->c_str());
  guard.script.clear();
  INFO("RESPOOL_AMQP_START exit status " << started);
  bool reconnected = false;
  // RESPOOL_AMQP_START returns once the broker answers; retry (bounded) in
  // case it needs a moment more to accept logins.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!reconnected && std::chrono::steady_clock::now() < deadline) {
    try {
      publisher->connect();
      reconnected = true;
    } catch (const amqp_error&) {
      std::this_thread::yield();
    }
  }
  REQUIRE(reconnected);
  CHECK(publisher->alive());
  // After a clean stop the durable queue keeps the confirmed persistent
  // message 1 (message 2 was never confirmed). A SIGKILLed broker may lose
  // the queue's declaration itself: that is the broker's business.
  publisher->channel().declare_queue(Queue{queue, Exchange{""}, ""});
  if (auto m = publisher->channel().get(queue, true)) {
    CHECK(m->payload() == 1);
  } else {
    WARN("the broker did not keep the durable queue across the outage");
  }
  publisher->channel().publish(json_envelope(4), "", queue);
  auto m2 = publisher->channel().get(queue, true);
  REQUIRE(m2);
  CHECK(m2->payload() == 4);
  publisher->channel().delete_queue(queue);
}
