// Links the optional components' own dependencies through respool's targets.
#include <iostream>

#ifdef CONSUMER_HAS_REDIS
#include <hiredis/hiredis.h>
#endif
#ifdef CONSUMER_HAS_AMQP
#include <amqp.h>
#endif
#ifdef CONSUMER_HAS_ASIO
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#endif

int main() {
#ifdef CONSUMER_HAS_REDIS
  redisReader* reader = redisReaderCreate();  // needs libhiredis at link time
  redisReaderFree(reader);
  std::cout << "hiredis " << HIREDIS_MAJOR << '.' << HIREDIS_MINOR << '\n';
#endif
#ifdef CONSUMER_HAS_AMQP
  std::cout << "rabbitmq-c " << amqp_version() << '\n';
#endif
#ifdef CONSUMER_HAS_ASIO
  boost::asio::io_context io;
  bool ran = false;
  boost::asio::post(io, [&ran] { ran = true; });
  io.run();
  std::cout << "asio " << (ran ? "ran" : "did not run") << '\n';
  if (!ran) return 1;
#endif
  return 0;
}
