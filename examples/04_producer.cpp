// Producers: publish the guide's news article (json + zlib) through the
// global producer pool, then read it back like a kombu consumer would.
#include <chrono>
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;
  using namespace std::chrono_literals;

  // [producer]
  // The exchange we send our news articles to.
  Exchange news_exchange{"news"};

  // The article we want to send.
  nlohmann::json article = {{"title", "No cellular coverage on the tube for 2012"},
                            {"ingress", "yadda yadda yadda"}};

  // The broker where our exchange is.
  Connection connection("memory://");

  {
    Lease<Producer> producer = pools::producers[connection].acquire(1s);
    PublishOptions options;
    options.exchange = news_exchange.name;
    options.routing_key = "domestic";
    options.declare = {news_exchange};
    options.serializer = "json";
    options.compression = "zlib";
    producer->publish(article, options);
  }  // the producer and its connection go back to their pools
  // [producer]

  // The consumer side: a queue bound to news/domestic (declared before the
  // publish, as a consumer would be running already — here we declare it on
  // the shared in-process broker and publish once more).
  Queue domestic{"news_domestic", news_exchange, "domestic"};
  auto conn = pools::connections[connection].acquire();
  std::printf("maybe_declare(queue): %s\n", maybe_declare(domestic, *conn) ? "declared now" : "already");
  std::printf("maybe_declare(queue) again: %s\n",
              maybe_declare(domestic, *conn) ? "declared now" : "already");
  {
    auto producer = pools::producers[connection].acquire(1s);
    PublishOptions options;
    options.exchange = news_exchange.name;
    options.routing_key = "domestic";
    options.compression = "zlib";
    producer->publish(article, options);
  }
  auto message = conn->default_channel().get("news_domestic", /*no_ack=*/false);
  if (!message) return 1;
  std::printf("received on %s/%s: %s\n", message->exchange().c_str(), message->routing_key().c_str(),
              message->payload().dump().c_str());
  std::printf("content_type=%s content_encoding=%s headers=%s wire body %zu bytes\n",
              message->content_type().c_str(), message->content_encoding().c_str(),
              message->headers().dump().c_str(), message->body().size());
  message->ack();
  return message->payload() == article ? 0 : 1;
}
