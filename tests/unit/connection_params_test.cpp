// Tests for respool/connection_params.hpp: kombu's URL handling
// (t/unit/test_connection.py, t/unit/utils/test_url.py) plus respool's
// normalisation, equality, hashing and error rules.
#include <catch2/catch.hpp>
#include <chrono>
#include <respool/connection_params.hpp>
#include <sstream>
#include <string>
#include <unordered_set>

using respool::ConnectionParams;

namespace {

ConnectionParams parse(std::string_view url) { return ConnectionParams::parse(url); }

struct Info {
  std::string userid, password, hostname;
  std::uint16_t port;
  std::string virtual_host;
};

void check_info(const ConnectionParams& p, const Info& expected) {
  CHECK(p.userid() == expected.userid);
  CHECK(p.password() == expected.password);
  CHECK(p.hostname() == expected.hostname);
  CHECK(p.port() == expected.port);
  CHECK(p.virtual_host() == expected.virtual_host);
}

// The invalid_url thrown by parse(url); fails the test if it does not throw one.
respool::invalid_url parse_error(std::string_view url) {
  try {
    parse(url);
  } catch (const respool::invalid_url& e) {
    return e;
  }
  FAIL("no invalid_url thrown");
  throw;  // unreachable
}

}  // namespace

// ---------------------------------------------------------------- kombu tests

TEST_CASE("kombu test_parse_url", "[connection_params][kombu]") {
  auto p = parse("amqp://user:pass@localhost:5672/my/vhost");
  CHECK(p.transport() == "amqp");
  check_info(p, {"user", "pass", "localhost", 5672, "my/vhost"});
  CHECK(p.options().empty());
  CHECK(p.alternates().empty());
}

TEST_CASE("kombu test_parse_generated_as_uri", "[connection_params][kombu]") {
  const std::string url = "amqp://user:pass@localhost:5672/my/vhost";
  auto p = parse(url);
  CHECK(p.as_uri() == "amqp://user:**@localhost:5672/my/vhost");
  CHECK(p.as_uri(true) == url);
  CHECK(parse(p.as_uri(true)) == p);
}

TEST_CASE("kombu test_rabbitmq_example_urls", "[connection_params][kombu]") {
  // Appendix A of https://www.rabbitmq.com/uri-spec.html, as kombu tests it.
  auto [url, info] = GENERATE(table<std::string, Info>({
      {"amqp://user:pass@host:10000/vhost", {"user", "pass", "host", 10000, "vhost"}},
      {"amqp://user%61:%61pass@ho%61st:10000/v%2fhost", {"usera", "apass", "hoast", 10000, "v/host"}},
      {"amqp://", {"guest", "guest", "localhost", 5672, "/"}},
      {"amqp://:@/", {"guest", "guest", "localhost", 5672, "/"}},
      {"amqp://user@/", {"user", "guest", "localhost", 5672, "/"}},
      {"amqp://user:pass@/", {"user", "pass", "localhost", 5672, "/"}},
      {"amqp://host", {"guest", "guest", "host", 5672, "/"}},
      {"amqp://:10000", {"guest", "guest", "localhost", 10000, "/"}},
      {"amqp:///vhost", {"guest", "guest", "localhost", 5672, "vhost"}},
      {"amqp://host/", {"guest", "guest", "host", 5672, "/"}},
      {"amqp://host/%2f", {"guest", "guest", "host", 5672, "/"}},
  }));
  CAPTURE(url);
  check_info(parse(url), info);
}

TEST_CASE("kombu test_url_IPV6 (hostname without brackets)", "[connection_params][kombu]") {
  // kombu skips this test ("urllib cannot parse ipv6 urls") and expects
  // "[::1]"; respool stores the address without brackets and re-brackets it
  // in as_uri().
  auto p = parse("amqp://[::1]");
  check_info(p, {"guest", "guest", "::1", 5672, "/"});
  CHECK(p.as_uri() == "amqp://guest:**@[::1]:5672//");
}

TEST_CASE("kombu test_bogus_scheme", "[connection_params][kombu]") {
  try {
    parse("bogus://localhost:7421");
    FAIL("no exception");
  } catch (const respool::unknown_transport& e) {
    CHECK(e.scheme() == "bogus");
    CHECK(e.code() == respool::errc::unknown_transport);
  }
}

TEST_CASE("kombu test_multiple_urls / test_completes_cycle", "[connection_params][kombu]") {
  auto p = parse("amqp://foo;amqp://bar");
  CHECK(p.hostname() == "foo");
  REQUIRE(p.alternates().size() == 1);
  CHECK(p.alternates()[0] == parse("amqp://bar"));

  auto three = parse("amqp://a;amqp://b;amqp://c");
  REQUIRE(three.alternates().size() == 2);
  CHECK(three.alternates()[0].hostname() == "b");
  CHECK(three.alternates()[1].hostname() == "c");
}

TEST_CASE("kombu test_maybe_switch_next: alternates may use another transport",
          "[connection_params][kombu]") {
  auto p = parse("amqp://foo;redis://example.com//3");
  REQUIRE(p.alternates().size() == 1);
  const auto& next = p.alternates()[0];
  CHECK(next.transport() == "redis");
  CHECK(next.hostname() == "example.com");
  CHECK(next.virtual_host() == "3");  // kombu keeps "/3"; its redis transport reads db 3
}

TEST_CASE("kombu test_copy / test_copy_multiples", "[connection_params][kombu]") {
  auto p = parse("amqp://A.example.com;amqp://B.example.com");
  ConnectionParams copy = p;
  CHECK(copy == p);
  CHECK(copy.alternates() == p.alternates());
  CHECK(std::hash<ConnectionParams>{}(copy) == std::hash<ConnectionParams>{}(p));
  ConnectionParams moved = std::move(copy);
  CHECK(moved == p);
  CHECK(moved.hash() == p.hash());
}

TEST_CASE("kombu utils test_as_url, through the constructor", "[connection_params][kombu]") {
  CHECK(ConnectionParams("memory").as_uri() == "memory://localhost//");
  CHECK(ConnectionParams("memory", "e.com").as_uri() == "memory://e.com//");
  CHECK(ConnectionParams("memory", "e.com", 80).as_uri() == "memory://e.com:80//");
  CHECK(ConnectionParams("memory", "e.com", 80, "u").as_uri() == "memory://u@e.com:80//");
  CHECK(ConnectionParams("memory", "e.com", 80, "u", "p").as_uri(true) == "memory://u:p@e.com:80//");
  CHECK(ConnectionParams("memory", "e.com", 80, "", "p").as_uri(true) == "memory://:p@e.com:80//");
  CHECK(ConnectionParams("memory", "e.com", 80, "", "p", "/foo").as_uri(true) == "memory://:p@e.com:80//foo");
  CHECK(ConnectionParams("memory", "e.com", 80, "", "p", "/foo").as_uri() == "memory://:**@e.com:80//foo");
}

TEST_CASE("kombu utils test_maybe_sanitize_url", "[connection_params][kombu]") {
  CHECK(parse("amqp://u:p@e.com//foo").as_uri() == "amqp://u:**@e.com:5672//foo");
  CHECK(parse("redis://u:p@e.com/1").as_uri() == "redis://u:**@e.com:6379/1");
}

TEST_CASE("kombu utils test_ssl_parameters: options are kept, canonicalised", "[connection_params][kombu]") {
  auto p = parse(
      "rediss://user:password@host:6379/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fvar%2Fssl%2Fmyca.pem"
      "&ssl_check_hostname=false");
  CHECK(p.transport() == "rediss");
  CHECK(p.option("ssl_cert_reqs") == "CERT_REQUIRED");
  CHECK(p.option("ssl_ca_certs") == "/var/ssl/myca.pem");
  CHECK(p.option("ssl_check_hostname") == "0");
  CHECK_FALSE(p.option("ssl_keyfile").has_value());
}

// ------------------------------------------------------------ scheme, defaults

TEST_CASE("scheme aliases and default ports", "[connection_params]") {
  auto [url, transport, port] = GENERATE(table<std::string, std::string, int>({
      {"amqp://", "amqp", 5672},
      {"pyamqp://", "amqp", 5672},
      {"librabbitmq://", "amqp", 5672},
      {"AMQP://", "amqp", 5672},
      {"amqps://", "amqps", 5671},
      {"redis://", "redis", 6379},
      {"rediss://", "rediss", 6379},
      {"Redis://", "redis", 6379},
      {"memory://", "memory", 0},
  }));
  CAPTURE(url);
  auto p = parse(url);
  CHECK(p.transport() == transport);
  CHECK(p.port() == port);
  CHECK(p.hostname() == "localhost");
}

TEST_CASE("credentials defaults per transport", "[connection_params]") {
  check_info(parse("amqps://h"), {"guest", "guest", "h", 5671, "/"});
  check_info(parse("redis://h"), {"", "", "h", 6379, "0"});
  check_info(parse("memory://h"), {"", "", "h", 0, "/"});
  check_info(parse("amqp://:pw@h"), {"guest", "pw", "h", 5672, "/"});
}

TEST_CASE("an empty or zero port means the default port (kombu `port or default`)", "[connection_params]") {
  CHECK(parse("amqp://h:").port() == 5672);
  CHECK(parse("amqp://h:0").port() == 5672);
  CHECK(parse("redis://h:").port() == 6379);
  CHECK(parse("amqp://h:00005673").port() == 5673);
  CHECK(parse("amqp://h:65535").port() == 65535);
  CHECK(parse("memory://h:0").as_uri() == "memory://h//");
}

TEST_CASE("hostnames are lowercased", "[connection_params]") {
  CHECK(parse("amqp://Example.COM").hostname() == "example.com");
  CHECK(parse("amqp://%45x").hostname() == "ex");
  CHECK(parse("amqp://Example.COM") == parse("amqp://example.com"));
}

// ------------------------------------------------------------- virtual hosts

TEST_CASE("amqp virtual host", "[connection_params]") {
  auto [url, vhost] = GENERATE(table<std::string, std::string>({
      {"amqp://h", "/"},
      {"amqp://h/", "/"},
      {"amqp://h//", "/"},
      {"amqp://h/%2F", "/"},
      {"amqp://h/%2f", "/"},
      {"amqp://h/foo", "foo"},
      {"amqp://h/Foo", "Foo"},
      {"amqp://h//foo", "/foo"},
      {"amqp://h/%2Ffoo", "/foo"},
      {"amqp://h/my/vhost", "my/vhost"},
      {"amqp://h///", "//"},
      {"amqp://h/a%20b", "a b"},
      {"amqp://h/a+b", "a+b"},
      {"amqp://h?heartbeat=1", "/"},
      {"amqp://h/v?heartbeat=1", "v"},
  }));
  CAPTURE(url);
  auto p = parse(url);
  CHECK(p.virtual_host() == vhost);
  CHECK(parse(p.as_uri(true)) == p);
}

TEST_CASE("redis database from the path", "[connection_params]") {
  auto [url, db] = GENERATE(table<std::string, std::string>({
      {"redis://h", "0"},
      {"redis://h/", "0"},
      {"redis://h//", "0"},
      {"redis://h/0", "0"},
      {"redis://h/3", "3"},
      {"redis://h//3", "3"},
      {"redis://h/%33", "3"},
      {"redis://h/007", "7"},
      {"redis://h/15", "15"},
      {"redis://h/2147483647", "2147483647"},
      {"rediss://h/4", "4"},
  }));
  CAPTURE(url);
  CHECK(parse(url).virtual_host() == db);
  CHECK(parse(url).as_uri() == "redis" + std::string(url[5] == 's' ? "s" : "") + "://h:6379/" + db);
}

TEST_CASE("a non-numeric redis database is invalid_url", "[connection_params][errors]") {
  auto url = GENERATE(as<std::string>{}, "redis://h/abc", "redis://h/3/", "redis://h/-1", "redis://h/1.5",
                      "redis://h/%2F%2F3", "redis://h/2147483648", "redis://h/99999999999999999999999",
                      "redis://h/ 3");
  CAPTURE(url);
  auto e = parse_error(url);
  CHECK(e.position() == 10);
  CHECK(std::string(e.what()).find("redis database") != std::string::npos);
}

TEST_CASE("memory virtual host", "[connection_params]") {
  CHECK(parse("memory://").virtual_host() == "/");
  CHECK(parse("memory://") == parse("memory:///"));
  CHECK(parse("memory://") == parse("memory://localhost//"));
  CHECK(parse("memory://h/x").virtual_host() == "x");
  CHECK(parse("memory://h/x") != parse("memory://h"));
  CHECK(parse("memory://").as_uri() == "memory://localhost//");
  CHECK(parse("memory://h/x").as_uri() == "memory://h/x");
}

// ----------------------------------------------------------------- user info

TEST_CASE("user info forms", "[connection_params]") {
  check_info(parse("redis://user@h"), {"user", "", "h", 6379, "0"});
  check_info(parse("redis://:pass@h"), {"", "pass", "h", 6379, "0"});
  check_info(parse("redis://user:@h"), {"user", "", "h", 6379, "0"});
  check_info(parse("redis://@h"), {"", "", "h", 6379, "0"});
  CHECK(parse("redis://:pass@h").as_uri() == "redis://:**@h:6379/0");
  CHECK(parse("redis://:pass@h").as_uri(true) == "redis://:pass@h:6379/0");
  CHECK(parse("redis://user@h").as_uri() == "redis://user@h:6379/0");
  CHECK(parse("redis://h").as_uri() == "redis://h:6379/0");
}

TEST_CASE("the last '@' ends the user info, the first ':' splits it", "[connection_params]") {
  auto p = parse("amqp://us@er:pa:ss@word@host");
  CHECK(p.userid() == "us@er");
  CHECK(p.password() == "pa:ss@word");
  CHECK(p.hostname() == "host");
  CHECK(p.as_uri(true) == "amqp://us%40er:pa%3Ass%40word@host:5672//");
  CHECK(parse(p.as_uri(true)) == p);
}

TEST_CASE("percent-decoding of every field", "[connection_params]") {
  auto p = parse("amqps://u%3Ax%40y:p%2F%3B%23%25%3F@h%2Dx:1/v%3Bh%3F?ssl%5Fca_certs=v%3D%2B+z%26");
  check_info(p, {"u:x@y", "p/;#%?", "h-x", 1, "v;h?"});
  CHECK(p.option("ssl_ca_certs") == "v=+ z&");
  CHECK(parse(p.as_uri(true)) == p);
}

// ----------------------------------------------------------------- IPv6

TEST_CASE("IPv6 literals", "[connection_params]") {
  auto p = parse("amqp://u:p@[::1]:5673/v");
  check_info(p, {"u", "p", "::1", 5673, "v"});
  CHECK(p.as_uri(true) == "amqp://u:p@[::1]:5673/v");

  CHECK(parse("redis://[FE80::1]").hostname() == "fe80::1");
  CHECK(parse("redis://[FE80::1]") == parse("redis://[fe80::1]:6379/0"));
  CHECK(parse("amqp://[::ffff:192.0.2.1]:1").hostname() == "::ffff:192.0.2.1");
  CHECK(parse("amqp://[fe80::1%25eth0]").hostname() == "fe80::1%eth0");
  CHECK(parse("amqp://[fe80::1%25eth0]").as_uri() == "amqp://guest:**@[fe80::1%25eth0]:5672//");
  CHECK(parse("amqp://[::1]:").port() == 5672);
  CHECK(parse("amqp://[::1]/").virtual_host() == "/");
  // a host that decodes to something with ':' must be an IPv6 address (it is
  // bracketed on the way out)
  CHECK(parse_error("amqp://ho%3Ast").position() == 7);
  auto encoded = parse("amqp://%3A%3A1");
  CHECK(encoded.hostname() == "::1");
  CHECK(parse(encoded.as_uri(true)) == encoded);
}

// ------------------------------------------------------------------- options

TEST_CASE("query options", "[connection_params]") {
  auto p = parse("amqp://h/?heartbeat=10&connect_timeout=5&frame_max=8192&confirm_publish=0");
  std::map<std::string, std::string> expected{
      {"confirm_publish", "0"}, {"connect_timeout", "5"}, {"frame_max", "8192"}, {"heartbeat", "10"}};
  CHECK(p.options() == expected);
  CHECK(p.option("heartbeat") == std::optional<std::string>("10"));
  CHECK(p.option("nope") == std::nullopt);
  CHECK(p.as_uri() ==
        "amqp://guest:**@h:5672//?confirm_publish=0&connect_timeout=5&frame_max=8192&heartbeat=10");
  CHECK(parse(p.as_uri(true)) == p);

  SECTION("order does not matter") {
    CHECK(parse("redis://h?socket_timeout=1&connect_timeout=2") ==
          parse("redis://h/0?connect_timeout=2&socket_timeout=1"));
    CHECK(parse("redis://h?socket_timeout=1&connect_timeout=2").hash() ==
          parse("redis://h/0?connect_timeout=2&socket_timeout=1").hash());
  }
  SECTION("options are part of the key") {
    CHECK(parse("redis://h?socket_timeout=1") != parse("redis://h"));
    CHECK(parse("redis://h?socket_timeout=1") != parse("redis://h?socket_timeout=2"));
  }
  SECTION("parse_qsl rules: empty items skipped, '+' is a space, '=' in a value") {
    auto q = parse("amqps://h?&&ssl_ca_certs=x+y%2Bz&&ssl_keyfile=a=b&");
    std::map<std::string, std::string> want{{"ssl_ca_certs", "x y+z"}, {"ssl_keyfile", "a=b"}};
    CHECK(q.options() == want);
    CHECK(q.as_uri() == "amqps://guest:**@h:5671//?ssl_ca_certs=x%20y%2Bz&ssl_keyfile=a%3Db");
    CHECK(parse(q.as_uri(true)) == q);
  }
}

// ----------------------------------------------------------------- failover

TEST_CASE("failover lists", "[connection_params]") {
  auto p = parse("amqp://a;amqp://b:1;redis://c");
  CHECK(p.hostname() == "a");
  REQUIRE(p.alternates().size() == 2);
  CHECK(p.alternates()[0] == parse("amqp://b:1"));
  CHECK(p.alternates()[1] == parse("redis://c"));
  for (const auto& alternate : p.alternates()) CHECK(alternate.alternates().empty());
  CHECK(p.as_uri() == "amqp://guest:**@a:5672//;amqp://guest:**@b:1//;redis://c:6379/0");
  CHECK(parse(p.as_uri(true)) == p);

  SECTION("alternates are part of the key, in order") {
    CHECK(p != parse("amqp://a"));
    CHECK(p != parse("amqp://a;redis://c;amqp://b:1"));
    CHECK(p == parse("pyamqp://a:5672//;amqp://b:1/;redis://C:6379/0"));
    CHECK(p.hash() == parse("pyamqp://a:5672//;amqp://b:1/;redis://C:6379/0").hash());
  }
  SECTION("whitespace around entries is ignored") {
    CHECK(parse(" amqp://a ; amqp://b:1;\tredis://c\n") == p);
  }
  SECTION("each entry has its own query (and inherits the primary's)") {
    auto q = parse("amqp://a?heartbeat=1;amqp://b?frame_max=8192");
    CHECK(q.option("heartbeat") == "1");
    CHECK_FALSE(q.option("frame_max"));
    CHECK(q.alternates()[0].option("frame_max") == "8192");
    CHECK(q.alternates()[0].option("heartbeat") == "1");
  }
  SECTION("an empty entry is invalid") {
    CHECK(parse_error("amqp://a;").position() == 9);
    CHECK(parse_error("amqp://a;;amqp://b").position() == 9);
    CHECK(parse_error(";amqp://a").position() == 0);
    CHECK(parse_error("amqp://a; ").position() == 10);
  }
  SECTION("an entry without a scheme takes the primary's") {
    CHECK(parse("amqp://a;b").alternates()[0] == parse("amqp://b"));
    CHECK(parse_error("amqp://a;b:/x").position() == 10);
  }
  SECTION("errors report positions in the whole string") {
    CHECK(parse_error("amqp://a;amqp://b:x").position() == 18);
    CHECK_THROWS_AS(parse("amqp://a;bogus://b"), respool::unknown_transport);
  }
}

// ------------------------------------------------------- equality and hashing

TEST_CASE("equal keys", "[connection_params][hash]") {
  auto [a, b] = GENERATE(table<std::string, std::string>({
      {"redis://localhost:6379", "redis://localhost"},
      {"redis://localhost", "redis://localhost:6379/0"},
      {"redis://localhost/0", "redis://"},
      {"redis://LOCALHOST:/", "redis://localhost:6379//0"},
      {"amqp://guest:guest@localhost:5672//", "amqp://"},
      {"pyamqp://", "amqp://"},
      {"amqp://localhost/", "amqp://:@localhost:0/%2F"},
      {"memory://", "memory:///"},
      {"memory://localhost", "memory://LocalHost:0//"},
      {"amqp://[::1]", "amqp://[::1]:5672/"},
  }));
  CAPTURE(a, b);
  CHECK(parse(a) == parse(b));
  CHECK_FALSE(parse(a) != parse(b));
  CHECK(parse(a).hash() == parse(b).hash());
  CHECK(std::hash<ConnectionParams>{}(parse(a)) == parse(b).hash());
}

TEST_CASE("different keys", "[connection_params][hash]") {
  auto [a, b] = GENERATE(table<std::string, std::string>({
      {"redis://localhost", "rediss://localhost"},
      {"redis://localhost", "redis://localhost/1"},
      {"redis://localhost", "redis://localhost:6380"},
      {"redis://localhost", "redis://127.0.0.1"},
      {"redis://localhost", "redis://:pw@localhost"},
      {"redis://u@localhost", "redis://localhost"},
      {"amqp://", "amqps://"},
      {"amqp://", "amqp://h"},
      {"amqp://h/Vhost", "amqp://h/vhost"},
      {"amqp://u:p1@h", "amqp://u:p2@h"},
      {"amqp://U:p@h", "amqp://u:p@h"},
      {"amqp://", "memory://"},
      {"memory://", "memory://h/x"},
      {"amqp://a?heartbeat=1", "amqp://a?heartbeat=2"},
      {"amqp://[::1]", "amqp://[0:0:0:0:0:0:0:1]"},  // addresses are compared as text
  }));
  CAPTURE(a, b);
  CHECK(parse(a) != parse(b));
  CHECK_FALSE(parse(a) == parse(b));
}

TEST_CASE("ConnectionParams works as an unordered key", "[connection_params][hash]") {
  std::unordered_set<ConnectionParams> set;
  set.insert(parse("redis://localhost:6379"));
  set.insert(parse("redis://localhost"));
  set.insert(parse("redis://localhost/0"));
  set.insert(ConnectionParams("redis"));
  set.insert(parse("amqp://"));
  set.insert(parse("pyamqp://guest:guest@localhost:5672//"));
  set.insert(ConnectionParams());
  CHECK(set.size() == 2);
}

TEST_CASE("the hash is computed once", "[connection_params][hash]") {
  // A long key hashes in constant time: the value is cached at construction.
  std::string vhost(60000, 'v');
  auto p = parse("amqp://h/" + vhost);
  auto start = std::chrono::steady_clock::now();
  std::size_t sum = 0;
  for (int i = 0; i < 100000; ++i) sum += std::hash<ConnectionParams>{}(p);
  auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(sum == p.hash() * 100000);
  CHECK(elapsed < std::chrono::milliseconds(200));  // hashing 6 GB would take seconds
}

// --------------------------------------------------------------- constructor

TEST_CASE("the constructor normalises as parse does", "[connection_params]") {
  CHECK(ConnectionParams("redis") == parse("redis://localhost"));
  CHECK(ConnectionParams("redis", "LOCALHOST", 6379, "", "", "0") == parse("redis://localhost:6379/0"));
  CHECK(ConnectionParams("redis", "h", 0, "", "", "/3") == parse("redis://h/3"));
  CHECK(ConnectionParams("pyamqp") == parse("amqp://"));
  CHECK(ConnectionParams("AMQP", "localhost", 5672, "guest", "guest", "/") == parse("amqp://"));
  CHECK(ConnectionParams() == parse("amqp://guest:guest@localhost:5672//"));
  CHECK(ConnectionParams("memory", "", 0, "", "", "x") == parse("memory:///x"));
  CHECK(ConnectionParams("amqp", "h", 0, "", "", "",
                         {{"heartbeat", "2"}, {"frame_max", "08192"}, {"empty", ""}, {"", "x"}}) ==
        parse("amqp://h?frame_max=8192&heartbeat=2"));
  CHECK(ConnectionParams("amqp", "h", 0, "", "", "", {{"ssl", "1"}}) == parse("amqps://h"));
  CHECK(ConnectionParams("redis", "[::1]") == parse("redis://[::1]"));
  CHECK(ConnectionParams("redis+socket", "/run/r.sock", 0, "", "pw", "3") ==
        parse("redis+socket://:pw@/run/r.sock?virtual_host=3"));
  CHECK(ConnectionParams("amqp", "a", 0, "", "", "", {}, {parse("amqp://b"), parse("redis://c")}) ==
        parse("amqp://a;amqp://b;redis://c"));
  SECTION("nested alternates are flattened") {
    CHECK(ConnectionParams("amqp", "a", 0, "", "", "", {}, {parse("amqp://b;redis://c")}) ==
          parse("amqp://a;amqp://b;redis://c"));
  }
  SECTION("errors") {
    CHECK_THROWS_AS(ConnectionParams("bogus"), respool::unknown_transport);
    CHECK_THROWS_AS(ConnectionParams(""), respool::invalid_url);
    try {  // a URL where the transport name belongs: an error that does not echo it
      ConnectionParams("amqp://u:s3cret@h");
      FAIL("no exception");
    } catch (const respool::invalid_url& e) {
      CHECK_THAT(e.what(), !Catch::Contains("s3cret") && Catch::Contains("ConnectionParams::parse"));
    }
    CHECK_THROWS_AS(ConnectionParams("redis", "h", 0, "", "", "db1"), respool::invalid_url);
    CHECK_THROWS_AS(ConnectionParams("amqp", std::string("h\0x", 3)), respool::invalid_url);
    CHECK_THROWS_AS(ConnectionParams("amqp", "h", 0, "u", std::string("p\0w", 3)), respool::invalid_url);
    CHECK_THROWS_AS(ConnectionParams("amqp", "h", 0, "", "", "", {{"k", std::string("\0", 1)}}),
                    respool::invalid_url);
    CHECK_THROWS_AS(ConnectionParams("amqp", "h", 0, "", "", "", {{"heartbeet", "1"}}), respool::invalid_url);
    CHECK_THROWS_AS(ConnectionParams("amqp", "ho:st"), respool::invalid_url);
    CHECK_THROWS_AS(ConnectionParams("redis+socket", "relative.sock"), respool::invalid_url);
    CHECK_THROWS_AS(ConnectionParams("redis+socket"), respool::invalid_url);
    CHECK_THROWS_AS(ConnectionParams("sentinel"), respool::invalid_url);  // no master_name
  }
}

TEST_CASE("as_uri round-trips awkward fields", "[connection_params]") {
  std::string all_bytes;
  for (int c = 1; c < 256; ++c) all_bytes += static_cast<char>(c);
  std::string no_colon = all_bytes;
  no_colon.erase(no_colon.find(':'), 1);
  auto transport = GENERATE(as<std::string>{}, "amqp", "redis", "memory", "sentinel", "redis+socket");
  auto vhost = transport == "amqp" || transport == "memory" ? all_bytes : std::string("12");
  ConnectionParams::options_type options;
  if (transport == "amqp" || transport == "redis")
    options = {{"ssl_ca_certs", all_bytes}, {"ssl_keyfile", " "}};
  if (transport == "sentinel") options = {{"master_name", all_bytes}, {"sentinel_password", all_bytes}};
  auto host = transport == "redis+socket" ? "/" + all_bytes : "Host" + no_colon;
  ConnectionParams p(transport, host, transport == "redis+socket" ? 0 : 1234, all_bytes, all_bytes + ":@",
                     vhost, options, {ConnectionParams("amqp", "::1", 0, ";", "#", "/;?#")});
  CAPTURE(transport);
  auto full = p.as_uri(true);
  CHECK(parse(full) == p);
  CHECK(parse(full).hash() == p.hash());
  auto masked = p.as_uri();
  CHECK(parse(masked).password() == "**");
  CHECK(masked.find(respool::detail::url::percent_encode(p.password())) == std::string::npos);
  CHECK(parse(masked).alternates()[0].password() == "**");
  if (transport == "sentinel") {
    CHECK(parse(masked).option("sentinel_password") == "**");
    CHECK(parse(full).option("sentinel_password") == all_bytes);
  }
}

TEST_CASE("operator<< prints the masked URI", "[connection_params]") {
  std::ostringstream out;
  out << parse("amqp://u:topsecret@h");
  CHECK(out.str() == "amqp://u:**@h:5672//");
}

// ---------------------------------------------------------------- bad input

TEST_CASE("bad URLs throw invalid_url with the offending position", "[connection_params][errors]") {
  auto [url, position, words] = GENERATE(table<std::string, std::size_t, std::string>({
      {"", 0, "empty URL"},
      {"   ", 3, "empty URL"},
      {"://x", 0, "empty scheme"},
      {"localhost", 9, "'://'"},
      {"amqp:/x", 4, "'://'"},
      {"amqp:x", 4, "'://'"},
      {"amqp", 4, "'://'"},
      {"user@host:5672", 9, "'://'"},
      {"1amqp://h", 0, "scheme"},
      {"am qp://h", 2, "scheme"},
      {"am_qp://h", 2, "scheme"},
      {"redis://:99999", 9, "port out of range"},
      {"redis://h:65536", 10, "port out of range"},
      {"redis://h:99999999999999999999999", 10, "port out of range"},
      {"amqp://h:port", 9, "port is not a number"},
      {"amqp://h:-1", 9, "port is not a number"},
      {"amqp://h:+1", 9, "port is not a number"},
      {"amqp://h:1:2", 9, "port is not a number"},
      {"amqp://h:%35", 9, "port is not a number"},
      {"amqp://::1", 8, "port is not a number"},
      {"amqp://[::1", 7, "unterminated '['"},
      {"amqp://u:p@[::1/x", 11, "unterminated '['"},
      {"amqp://[]", 7, "empty address"},
      {"amqp://[::1]x", 12, "after ']'"},
      {"amqp://[[::1]", 8, "'['"},
      {"amqp://h]", 8, "'[' or ']'"},
      {"amqp://a[b]", 8, "'[' or ']'"},
      {"amqp://h/%", 9, "percent-escape"},
      {"amqp://h/%4", 9, "percent-escape"},
      {"amqp://h/%zz", 9, "percent-escape"},
      {"amqp://h/%g1", 9, "percent-escape"},
      {"amqp://%x@h", 7, "percent-escape in user name"},
      {"amqp://u:%x@h", 9, "percent-escape in password"},
      {"amqp://h%/", 8, "percent-escape in host"},
      {"amqp://[::1%]", 11, "percent-escape in host"},
      {"amqp://h?a=%", 11, "percent-escape in option value"},
      {"amqp://h?%=1", 9, "percent-escape in option name"},
      {"amqp://h?%", 9, "percent-escape in option name"},
      {"amqp://h/%00", 9, "NUL"},
      {"amqp://u:%00@h", 9, "NUL"},
      {"amqp://h#frag", 8, "'#'"},
      {"amqp://h/v\x01", 10, "control character"},
      {"amqp://h/\x7f", 9, "control character"},
      {"amqp://h/a\tb", 10, "control character"},
  }));
  CAPTURE(url);
  auto e = parse_error(url);
  CHECK(e.position() == position);
  CHECK_THAT(e.what(), Catch::Contains(words));
  CHECK(e.code() == respool::errc::invalid_url);
}

TEST_CASE("embedded NUL bytes", "[connection_params][errors]") {
  using namespace std::string_literals;
  CHECK(parse_error("amqp://h\0x"s).position() == 8);
  CHECK(parse_error("\0amqp://h"s).position() == 0);
  CHECK(parse_error("amqp://h/v;amqp://x\0"s).position() == 19);
  CHECK_THAT(parse_error("amqp://h\0"s).what(), Catch::Contains("NUL"));
}

TEST_CASE("overlong URLs are rejected quickly", "[connection_params][errors]") {
  std::string ok = "amqp://h/" + std::string(ConnectionParams::max_url_length - 9, 'v');
  CHECK(parse(ok).virtual_host().size() == ConnectionParams::max_url_length - 9);

  std::string too_long = ok + "v";
  CHECK(parse_error(too_long).position() == ConnectionParams::max_url_length);

  std::string huge(std::size_t{1} << 20, ';');
  auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(parse(huge), respool::invalid_url);
  CHECK_THROWS_AS(parse(std::string(std::size_t{1} << 20, '%')), respool::invalid_url);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(100));

  SECTION("worst cases under the limit stay linear") {
    auto t0 = std::chrono::steady_clock::now();
    std::string semis(ConnectionParams::max_url_length, ';');
    CHECK_THROWS_AS(parse(semis), respool::invalid_url);
    std::string ats = "redis://" + std::string(ConnectionParams::max_url_length - 8, '@');
    CHECK(parse(ats).hostname() == "localhost");
    std::string amps = "redis://h?" + std::string(ConnectionParams::max_url_length - 10, '&');
    CHECK(parse(amps).options().empty());
    std::string many;
    while (many.size() + 9 + 8 <= ConnectionParams::max_url_length) many += "redis://;";
    many += "redis://";
    CHECK(parse(many).alternates().size() > 7000);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  }
}

TEST_CASE("unknown schemes throw unknown_transport", "[connection_params][errors]") {
  auto [url, scheme] = GENERATE(table<std::string, std::string>({
      {"foo://x", "foo"},
      {"FOO://x", "foo"},
      {"sqla+postgresql://u:p@h/db", "sqla+postgresql"},
      {"http://h", "http"},
  }));
  CAPTURE(url);
  try {
    parse(url);
    FAIL("no exception");
  } catch (const respool::unknown_transport& e) {
    CHECK(e.scheme() == scheme);
    CHECK_THAT(e.what(), !Catch::Contains(":p@"));
  }
}

TEST_CASE("errors never contain the password", "[connection_params][errors]") {
  using namespace std::string_literals;
  auto url = GENERATE(as<std::string>{}, "amqp://user:s3cret@h:badport", "amqp://user:s3cret@h:99999",
                      "amqp://user:s3cret",  // forgot the '@': "s3cret" would be the port
                      "amqp://user:s3cret/vhost", "amqp://user:s3cret@h/%zz", "amqp://user:s3cret%zz@h",
                      "amqp://user:s3cret%00@h", "amqp://user:s3cret@[::1", "amqp://user:s3cret@[::1]x",
                      "amqp://user:s3cret@h]", "redis://:s3cret@h/abc", "amqp://user:s3cret@h#frag",
                      "amqp://user:s3cr#et@h", "amqp://user:s3cret@h;", "amqp://user:s3cr;et@h",
                      "amqp://user:s3cret@h\x01", "amqp://user:s3cret@h\0"s, "user:s3cret@host",
                      "amqp:/user:s3cret@host", "s3cret@amqp://h", "amqp://h;redis://:s3cret@h:s3cret");
  CAPTURE(url);
  try {
    parse(url);
    FAIL("no exception");
  } catch (const respool::error& e) {
    CHECK_THAT(e.what(), !Catch::Contains("s3cr") && !Catch::Contains("cret"));
  }
}

TEST_CASE("errors are respool::error / std::system_error", "[connection_params][errors]") {
  CHECK_THROWS_AS(parse("amqp://h:x"), respool::error);
  CHECK_THROWS_AS(parse("amqp://h:x"), std::system_error);
  CHECK_THROWS_AS(parse("nope://h"), respool::error);
  try {
    parse("amqp://h:x");
  } catch (const std::system_error& e) {
    CHECK(e.code() == respool::errc::invalid_url);
  }
}

TEST_CASE("surrounding whitespace is ignored", "[connection_params]") {
  CHECK(parse("  redis://h/1\n") == parse("redis://h/1"));
  CHECK(parse("\tamqp://\r\n") == parse("amqp://"));
}

TEST_CASE("non-ASCII bytes survive", "[connection_params]") {
  auto p = parse("amqp://us\xc3\xa9r:p\xc3\xa0ss@h\xc3\xb4te/v\xc3\xa9");
  check_info(p, {"us\xc3\xa9r", "p\xc3\xa0ss", "h\xc3\xb4te", 5672, "v\xc3\xa9"});
  CHECK(p.as_uri() == "amqp://us%C3%A9r:**@h%C3%B4te:5672/v%C3%A9");
  CHECK(parse(p.as_uri(true)) == p);
}

// ======================================================= issue 10, per class
// Each case: a URL and the fields it must give, or the error it must raise.
// Compared with Python kombu 5.2.4's Connection(url) (see each comment).

namespace {
using options_map = std::map<std::string, std::string>;
}

TEST_CASE("class 1: unknown, misspelled, field-repeating and malformed options are refused",
          "[connection_params][errors][options]") {
  // kombu raises TypeError (unexpected keyword / multiple values) or
  // ValueError for all of these except `?x?y`, which it swallows.
  auto [url, position, words] = GENERATE(table<std::string, std::size_t, std::string>({
      {"amqp://h?conect_timeout=3", 9,
       "unknown option 'conect_timeout' for amqp:// URLs (known: channel_max"},
      {"amqp://h?heartbeet=10", 9, "unknown option 'heartbeet'"},
      {"amqp://h?foo=bar", 9, "unknown option 'foo'"},
      {"redis://h?heartbeat=10", 10, "unknown option 'heartbeat' for redis:// URLs (known: connect_timeout"},
      {"amqp://h?socket_timeout=1", 9, "unknown option 'socket_timeout' for amqp://"},
      {"memory://h?a=1", 11, "unknown option 'a' for memory:// URLs (known: none)"},
      {"amqp://h?=x", 9, "empty name"},
      {"amqp://h?heartbeat=", 9, "'heartbeat' has an empty value"},
      {"amqp://h?heartbeat", 9, "'heartbeat' has no value"},
      {"amqp://h?password=x", 9, "'password' is not allowed in amqp:// URLs: it repeats the URL's password"},
      {"amqp://h?userid=x", 9, "'userid' is not allowed"},
      {"amqp://h?hostname=x", 9, "'hostname' is not allowed"},
      {"amqp://h?port=1", 9, "'port' is not allowed"},
      {"amqp://h?virtual_host=x", 9, "'virtual_host' is not allowed"},
      {"amqp://h?transport=redis", 9, "'transport' is not allowed"},
      {"redis://h?db=3", 10, "'db' is not allowed in redis:// URLs: it repeats the URL's path"},
      {"redis+socket:///s?db=3", 18, "write the database as ?virtual_host=N"},
      {"amqp://h?heartbeat=10=20", 9, "'heartbeat' must be an integer from 0 to 65535"},
      {"amqp://h?heartbeat=a+b", 9, "'heartbeat' must be an integer"},
      {"amqp://h?heartbeat=-1", 9, "'heartbeat' must be an integer"},
      {"amqp://h?heartbeat=65536", 9, "'heartbeat' must be an integer"},
      {"amqp://h?frame_max=12", 9, "'frame_max' must be an integer from 4096"},
      {"amqp://h?x?y", 10, "second '?'"},
      {"amqp://h?heartbeat=1&heartbeat=2", 21, "'heartbeat' is given twice"},
      {"redis://h?connect_timeout=1&socket_connect_timeout=2", 28, "is given twice"},
      {"amqp://h?connect_timeout=soon", 9, "'connect_timeout' must be a number of seconds"},
      {"amqp://h?connect_timeout=1e3", 9, "must be a number of seconds"},
      {"amqp://h?connect_timeout=-1", 9, "must be a number of seconds"},
      {"redis://h?socket_timeout=inf", 10, "must be a number of seconds"},
      {"amqp://h?confirm_publish=maybe", 9, "'confirm_publish' must be 1/true/yes/on or 0/false/no/off"},
      {"amqps://h?ssl_cert_reqs=badvalue", 10, "must be one of CERT_REQUIRED,CERT_OPTIONAL,CERT_NONE"},
      {"amqp://h?login_method=AMQPLAIN", 9, "'login_method' must be one of PLAIN"},
      {"amqp://h?auth_mechanism=EXTERNAL", 9, "'auth_mechanism' (login_method) must be one of PLAIN"},
      {"amqp://h?connection_timeout=2.5", 9, "whole number of milliseconds"},
      {"amqp://h?verify=yes", 9, "verify_peer or verify_none"},
      {"amqps://h?fail_if_no_peer_cert=true", 10, "a RabbitMQ server setting"},
      {"amqps://h?server_name_indication=x", 10, "is not supported"},
      {"amqp://h?channel_max=70000", 9, "'channel_max' must be an integer from 0 to 65535"},
      {"sentinel://s?master_name=m&wait_replicas=x", 27, "'wait_replicas' must be an integer"},
  }));
  CAPTURE(url);
  auto e = parse_error(url);
  CHECK(e.position() == position);
  CHECK_THAT(e.what(), Catch::Contains(words));
}

TEST_CASE("class 1: option errors never show a value or a mis-encoded secret",
          "[connection_params][errors]") {
  using namespace std::string_literals;
  auto url = GENERATE(as<std::string>{}, "amqp://h?heartbeat=s3cret", "amqp://user:12?s3cret@h",
                      "amqp://h?x%20s3cret=1", "amqp://h?ssl_cert_reqs=s3cret",
                      "sentinel://h?master_name=m&sentinel_password=", "amqp://h?a%40s3cret=1");
  CAPTURE(url);
  auto e = parse_error(url);
  CHECK_THAT(e.what(), !Catch::Contains("s3cret"));
}

TEST_CASE("class 1: every option a scheme knows is accepted and canonicalised",
          "[connection_params][options]") {
  auto [url, transport, options] = GENERATE(table<std::string, std::string, options_map>({
      {"amqp://h?connect_timeout=0.25&read_timeout=0&write_timeout=10",
       "amqp",
       {{"connect_timeout", "0.25"}, {"read_timeout", "0"}, {"write_timeout", "10"}}},
      {"amqp://h?heartbeat=010&frame_max=131072&channel_max=0",
       "amqp",
       {{"channel_max", "0"}, {"frame_max", "131072"}, {"heartbeat", "10"}}},
      {"amqp://h?confirm_publish=True", "amqp", {{"confirm_publish", "1"}}},
      {"amqp://h?confirm_publish=no", "amqp", {{"confirm_publish", "0"}}},
      {"amqp://h?login_method=PLAIN", "amqp", {{"login_method", "PLAIN"}}},
      // The RabbitMQ URI spec's names, read as respool's (kombu refuses them).
      {"amqp://h?connection_timeout=2500", "amqp", {{"connect_timeout", "2.5"}}},
      {"amqp://h?connection_timeout=3000", "amqp", {{"connect_timeout", "3"}}},
      {"amqp://h?auth_mechanism=PLAIN", "amqp", {{"login_method", "PLAIN"}}},
      {"amqps://h?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/k.pem&verify=verify_none",
       "amqps",
       {{"ssl_ca_certs", "/ca.pem"},
        {"ssl_cert_reqs", "CERT_NONE"},
        {"ssl_certfile", "/c.pem"},
        {"ssl_keyfile", "/k.pem"}}},
      {"amqps://h?verify=verify_peer", "amqps", {{"ssl_cert_reqs", "CERT_REQUIRED"}}},
      {"amqps://h?ssl_cert_reqs=optional", "amqps", {{"ssl_cert_reqs", "CERT_OPTIONAL"}}},
      {"redis://h?connect_timeout=1&socket_timeout=2&wait_replicas=1",
       "redis",
       {{"connect_timeout", "1"}, {"socket_timeout", "2"}, {"wait_replicas", "1"}}},
      {"redis://h?socket_connect_timeout=3", "redis", {{"connect_timeout", "3"}}},
      {"rediss://h?ssl_check_hostname=false&ssl_cert_reqs=none",
       "rediss",
       {{"ssl_cert_reqs", "CERT_NONE"}, {"ssl_check_hostname", "0"}}},
      {"sentinel://h?master_name=mymaster&sentinel_password=pw&socket_timeout=1",
       "sentinel",
       {{"master_name", "mymaster"}, {"sentinel_password", "pw"}, {"socket_timeout", "1"}}},
      {"redis+socket:///s?connect_timeout=1&virtual_host=2", "redis+socket", {{"connect_timeout", "1"}}},
  }));
  CAPTURE(url);
  auto p = parse(url);
  CHECK(p.transport() == transport);
  CHECK(p.options() == options);
  CHECK(parse(p.as_uri(true)) == p);
}

TEST_CASE("class 2: ?ssl=1 (and any ssl_* option) is TLS, default port 5671, ssl=0 is refused",
          "[connection_params][tls]") {
  // kombu 5.2.4: Connection("amqp://h?ssl=1") -> ssl on, port 5671; so is ssl=0 (any value).
  auto [url, transport, port] = GENERATE(table<std::string, std::string, int>({
      {"amqp://h?ssl=1", "amqps", 5671},
      {"amqp://h?ssl=true", "amqps", 5671},
      {"pyamqp://h?ssl=yes", "amqps", 5671},
      {"amqp://h:5672?ssl=1", "amqps", 5672},  // an explicit port stays
      {"amqps://h?ssl=1", "amqps", 5671},
      {"amqp://h?ssl_ca_certs=/ca.pem", "amqps", 5671},  // kombu: ssl={'ssl_ca_certs': ...} -> TLS
      {"amqp://h?cacertfile=/ca.pem", "amqps", 5671},
      {"redis://h?ssl=1", "rediss", 6379},
      {"redis://h?ssl_cert_reqs=CERT_NONE", "rediss", 6379},
  }));
  CAPTURE(url);
  auto p = parse(url);
  CHECK(p.transport() == transport);
  CHECK(p.port() == port);
  CHECK_FALSE(p.option("ssl"));
  CHECK(parse(p.as_uri(true)) == p);
  CHECK(parse("amqp://h?ssl=1") == parse("amqps://h"));

  for (const char* refused :
       {"amqp://h?ssl=0", "amqp://h?ssl=false", "amqps://h?ssl=off", "redis://h?ssl=no"})
    CHECK_THAT(parse_error(refused).what(), Catch::Contains("refuses ssl=0"));
  CHECK_THAT(parse_error("amqp://h?ssl=2").what(), Catch::Contains("must be 1/true/yes/on"));
  CHECK_THAT(parse_error("memory://h?ssl=1").what(), Catch::Contains("unknown option 'ssl'"));
  CHECK_THAT(parse_error("sentinel://h?master_name=m&ssl=1").what(), Catch::Contains("unknown option 'ssl'"));
}

TEST_CASE("class 3: the masked URI never shows a secret", "[connection_params][mask]") {
  auto p = parse("sentinel://:m4ster@s1?master_name=m&sentinel_password=s3ntinel;sentinel://s2:26380");
  const std::string masked = p.as_uri();
  CHECK(masked ==
        "sentinel://:**@s1:26379/0?master_name=m&sentinel_password=**;"
        "sentinel://:**@s2:26380/0?master_name=m&sentinel_password=**");
  CHECK_THAT(masked, !Catch::Contains("m4ster") && !Catch::Contains("s3ntinel"));
  std::ostringstream out;
  out << p;
  CHECK(out.str() == masked);
  CHECK_THAT(p.as_uri(true), Catch::Contains("sentinel_password=s3ntinel"));
  CHECK(parse(p.as_uri(true)) == p);
  // The secret options kombu's Connection takes in the URL are refused (class 1).
  CHECK_THROWS_AS(parse("amqp://h?password=s3cret"), respool::invalid_url);
}

TEST_CASE("class 4: brackets are validated", "[connection_params][errors][brackets]") {
  auto [url, position, words] = GENERATE(table<std::string, std::size_t, std::string>({
      {"amqp://u[@h", 8, "user info"},
      {"amqp://u:p]@h", 10, "user info"},
      {"amqp://[@h", 7, "user info"},
      {"amqp://]@h", 7, "user info"},
      {"amqp://[not-ipv6]", 8, "not an IPv6 address"},
      {"amqp://[127.0.0.1]", 8, "not an IPv6 address"},
      {"amqp://[200:65536:db8::1]", 8, "not an IPv6 address"},
      {"amqp://[::1%25]", 8, "not an IPv6 address"},
      {"amqp://[::g]", 8, "not an IPv6 address"},
      {"amqp://h:1]", 10, "after the host"},
      {"amqp://h:[1]", 9, "after the host"},
      {"amqp://[::1]]", 12, "after ']'"},
  }));
  CAPTURE(url);
  auto e = parse_error(url);
  CHECK(e.position() == position);
  CHECK_THAT(e.what(), Catch::Contains(words));

  CHECK(parse("amqp://[2001:db8::1]:5673").hostname() == "2001:db8::1");
  CHECK(parse("amqp://[::ffff:127.0.0.1]").hostname() == "::ffff:127.0.0.1");
  CHECK(parse("amqp://u%5B:p%5D@h").userid() == "u[");
  CHECK(parse("amqp://u%5B:p%5D@h").password() == "p]");
}

TEST_CASE("class 5: failover entries without a scheme, and what alternates inherit",
          "[connection_params][failover]") {
  struct expected {
    std::string transport, userid, password, hostname;
    int port;
    std::string virtual_host;
    options_map options;
  };
  // kombu 5.2.4, Connection(url).maybe_switch_next().info(): a scheme-less
  // entry inherits everything but the host (the port too); a URL entry
  // inherits the virtual host, the options and (a kombu quirk respool does
  // not copy) the port, but not the user and password (sentinel:// entries
  // do in respool: they are more sentinels of the same master).
  auto [url, want] = GENERATE(table<std::string, expected>({
      {"amqp://broker.example.com;broker2.example.com",
       {"amqp", "guest", "guest", "broker2.example.com", 5672, "/", {}}},
      {"amqp://u:p@a:5673/vh?heartbeat=5;b", {"amqp", "u", "p", "b", 5673, "vh", {{"heartbeat", "5"}}}},
      {"amqp://u:p@a:5673/vh?heartbeat=5;b:5674", {"amqp", "u", "p", "b", 5674, "vh", {{"heartbeat", "5"}}}},
      {"amqp://u:p@a:5673/vh?heartbeat=5;amqp://b",
       {"amqp", "guest", "guest", "b", 5672, "vh", {{"heartbeat", "5"}}}},
      {"amqp://u:p@a/vh?heartbeat=5;amqp://x:y@b/other?heartbeat=7",
       {"amqp", "x", "y", "b", 5672, "other", {{"heartbeat", "7"}}}},
      {"amqp://u:p@a/vh?heartbeat=5;amqp://b//",
       {"amqp", "guest", "guest", "b", 5672, "/", {{"heartbeat", "5"}}}},
      {"amqp://u:p@a/vh?heartbeat=5;redis://b", {"redis", "", "", "b", 6379, "0", {}}},
      {"amqp://u:p@a/vh?heartbeat=5;amqps://b", {"amqps", "guest", "guest", "b", 5671, "/", {}}},
      {"amqp://a?ssl=1;b", {"amqps", "guest", "guest", "b", 5671, "/", {}}},
      {"redis://:pw@a/3;b", {"redis", "", "pw", "b", 6379, "3", {}}},
      {"redis://:pw@a/3;redis://b", {"redis", "", "", "b", 6379, "3", {}}},
      {"redis://:pw@a/3;@b/4", {"redis", "", "", "b", 6379, "4", {}}},
      {"sentinel://:pw@s1?master_name=m;sentinel://@s2",
       {"sentinel", "", "", "s2", 26379, "0", {{"master_name", "m"}}}},
      {"redis://u:pw@a/3;:other@b", {"redis", "", "other", "b", 6379, "3", {}}},
      {"sentinel://:pw@s1/2?master_name=m;sentinel://s2:26380",
       {"sentinel", "", "pw", "s2", 26380, "2", {{"master_name", "m"}}}},
      {"sentinel://s1?master_name=m;s2", {"sentinel", "", "", "s2", 26379, "0", {{"master_name", "m"}}}},
      {"redis+socket:///a.sock?virtual_host=3;/b.sock", {"redis+socket", "", "", "/b.sock", 0, "3", {}}},
      {"amqp://a;[::1]:5673", {"amqp", "guest", "guest", "::1", 5673, "/", {}}},
  }));
  CAPTURE(url);
  auto p = parse(url);
  REQUIRE(p.alternates().size() == 1);
  const auto& alt = p.alternates()[0];
  CHECK(alt.transport() == want.transport);
  CHECK(alt.userid() == want.userid);
  CHECK(alt.password() == want.password);
  CHECK(alt.hostname() == want.hostname);
  CHECK(alt.port() == want.port);
  CHECK(alt.virtual_host() == want.virtual_host);
  CHECK(alt.options() == want.options);
  CHECK(parse(p.as_uri(true)) == p);

  SECTION("an entry without a scheme must still be well-formed") {
    CHECK(parse_error("amqp://a;b:x").position() == 11);
    CHECK(parse_error("amqp://a;amqp:/b").position() == 13);
    CHECK(parse_error("amqp://a;b?heartbeet=1").position() == 11);
    CHECK(parse_error("b;amqp://a").position() == 1);  // the first entry needs a scheme
  }
}

TEST_CASE("class 6: sentinel:// and redis+socket://", "[connection_params][sentinel][socket]") {
  // kombu: sentinel://[USER:PASSWORD@]SENTINEL_ADDRESS[:PORT], ';'-separated,
  // master_name from transport_options; respool takes it from the URL.
  auto s = parse("sentinel://:pw@127.0.0.1:26379/2?master_name=mymaster;sentinel://127.0.0.1:26380");
  CHECK(s.transport() == "sentinel");
  CHECK(s.hostname() == "127.0.0.1");
  CHECK(s.port() == 26379);
  CHECK(s.password() == "pw");
  CHECK(s.virtual_host() == "2");
  CHECK(s.option("master_name") == "mymaster");
  REQUIRE(s.alternates().size() == 1);
  CHECK(s.alternates()[0].port() == 26380);
  CHECK(s.alternates()[0].password() == "pw");
  CHECK(s.alternates()[0].option("master_name") == "mymaster");
  CHECK(parse("sentinel://h?master_name=m").port() == 26379);
  CHECK_THAT(parse_error("sentinel://h").what(), Catch::Contains("master_name"));
  CHECK_THAT(parse_error("sentinel://h;sentinel://g?master_name=m").what(), Catch::Contains("master_name"));
  CHECK(parse_error("sentinel://h/x?master_name=m").position() == 13);

  // kombu: redis+socket:///path (the whole path, its leading '/' included),
  // the database as ?virtual_host=N, a password in the user info.
  auto u = parse("redis+socket://:pw@/run/redis/redis.sock?virtual_host=3&socket_timeout=1");
  CHECK(u.transport() == "redis+socket");
  CHECK(u.hostname() == "/run/redis/redis.sock");
  CHECK(u.port() == 0);
  CHECK(u.password() == "pw");
  CHECK(u.virtual_host() == "3");
  CHECK(u.option("socket_timeout") == "1");
  CHECK_FALSE(u.option("virtual_host"));
  CHECK(u.as_uri() == "redis+socket://:**@/run/redis/redis.sock?socket_timeout=1&virtual_host=3");
  CHECK(parse(u.as_uri(true)) == u);
  CHECK(parse("redis+socket:///tmp/R.sock").hostname() == "/tmp/R.sock");  // a path keeps its case
  CHECK(parse("redis+socket:///tmp/r.sock").virtual_host() == "0");
  CHECK(parse("redis+socket:///tmp/r.sock").as_uri() == "redis+socket:///tmp/r.sock");
  CHECK(parse("redis+socket:///tmp/r.sock?virtual_host=/4").virtual_host() == "4");  // as kombu
  CHECK(parse("redis+socket:///tmp/a%20b.sock").hostname() == "/tmp/a b.sock");
  CHECK(parse("REDIS+SOCKET:///s") == parse("redis+socket:///s?virtual_host=0"));
  auto [bad, position, words] = GENERATE(table<std::string, std::size_t, std::string>({
      {"redis+socket://", 15, "socket's path"},
      {"redis+socket:///", 15, "socket's path"},
      {"redis+socket://h/tmp/r.sock", 15, "no host or port"},
      {"redis+socket://:1/tmp/r.sock", 15, "no host or port"},
      {"redis+socket:///s?virtual_host=x", 18, "redis database"},
      {"redis+socket:///s?virtual_host=1&virtual_host=2", 33, "given twice"},
      {"redis+socket:///s?ssl=1", 18, "unknown option 'ssl'"},
  }));
  CAPTURE(bad);
  auto e = parse_error(bad);
  CHECK(e.position() == position);
  CHECK_THAT(e.what(), Catch::Contains(words));
}
