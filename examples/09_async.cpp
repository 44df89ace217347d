// Asynchronous acquire on Boost.Asio: a coroutine (C++20) or a callback.
#include <boost/asio.hpp>
#include <chrono>
#include <cstdio>
#include <respool/async.hpp>
#include <respool/respool.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
// [coroutine]
asio::awaitable<void> publish_news(respool::ProducerPool& producers) {
  respool::Lease<respool::Producer> producer = co_await producers.async_acquire(1s, asio::use_awaitable);
  respool::PublishOptions options;
  options.routing_key = "inbox";  // default exchange: straight to the queue
  producer->publish({{"title", "async hello"}}, options);
  std::printf("coroutine: published with a pooled producer\n");
}
// [coroutine]
#endif

int main() {
  asio::io_context io;
  respool::ConnectionPool connections("memory://async-demo/", 1);
  respool::ProducerPool producers(connections, 1);
  {
    auto conn = connections.acquire();
    respool::Queue inbox;
    inbox.name = "inbox";
    respool::maybe_declare(inbox, *conn);
  }

  // [callback]
  auto held = connections.acquire();  // the pool is now full
  connections.async_acquire(
      50ms, asio::bind_executor(io, [](boost::system::error_code ec, respool::Lease<respool::Connection> c) {
        std::printf("callback: %s (lease %s)\n", ec.message().c_str(), c ? "held" : "empty");
      }));
  io.run();  // the timeout expires: acquire_timeout
  // [callback]
  held.release();

#if defined(BOOST_ASIO_HAS_CO_AWAIT)
  asio::co_spawn(io, publish_news(producers), asio::detached);
  io.restart();
  io.run();
#else
  producers.async_acquire(
      asio::bind_executor(io, [](boost::system::error_code ec, respool::Lease<respool::Producer> p) {
        respool::PublishOptions options;
        options.routing_key = "inbox";
        if (!ec) p->publish({{"title", "async hello"}}, options);
        std::printf("callback: published with a pooled producer\n");
      }));
  io.restart();
  io.run();
#endif
  auto conn = connections.acquire();
  std::size_t n = conn->default_channel().queue_size("inbox");
  std::printf("inbox holds %zu message(s)\n", n);
  return n == 1 ? 0 : 1;
}
