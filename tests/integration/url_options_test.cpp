// URL options that change what goes on the wire (issue 10), against the
// real RabbitMQ tests/run starts:
//  * ?ssl=1 is TLS (kombu turns TLS on and moves the port to 5671): against
//    the broker's plain-text port the TLS handshake fails, where the same
//    URL without ?ssl connects;
//  * ?channel_max=N is negotiated (rabbitmqctl lists it).
// Reads RESPOOL_AMQP_URL and RESPOOL_AMQP_CTL.
#include <respool/respool.hpp>
#include <respool/transport/amqp.hpp>

#include "redis_servers.hpp"

using namespace respool;
using namespace respool_test;

TEST_CASE("amqp: ?ssl=1 connects with TLS (refused by a plain-text port), without it in plain text",
          "[amqp][tls]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_AMQP_URL");
  const std::string with_ssl =
      url + (url.find('?') == std::string::npos ? "?" : "&") + "ssl=1&connect_timeout=5";
  Connection tls(with_ssl);
  CHECK(tls.params().transport() == "amqps");
  CHECK(tls.params().port() == ConnectionParams::parse(url).port());  // an explicit port stays
  try {
    tls.connect();
    FAIL("a TLS handshake succeeded against a plain-text AMQP port");
  } catch (const error& e) {
    CHECK(e.code() == errc::connection_failed);
    CHECK_THAT(e.what(), Catch::Contains("TLS"));
  }
  Connection plain(url);
  plain.connect();
  CHECK(plain.connected());
}

TEST_CASE("amqp: ?channel_max is negotiated with the broker", "[amqp]") {
  RESPOOL_URL_OR_SKIP("RESPOOL_AMQP_URL");
  const char* ctl = env("RESPOOL_AMQP_CTL");
  if (!ctl) {
    WARN("skipped: RESPOOL_AMQP_CTL not set (run tests/run)");
    return;
  }
  Connection connection(url + (url.find('?') == std::string::npos ? "?" : "&") + "channel_max=7");
  connection.connect();
  auto [status, lines] =
      run(std::string(ctl) + " list_connections -q --no-table-headers channel_max 2>/dev/null");
  REQUIRE(status == 0);
  CHECK(std::find(lines.begin(), lines.end(), "7") != lines.end());
}
