// Default pools: the connection is the key. Connections with equal
// normalised parameters share one pool, however the URL was spelled.
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;

  // [groups]
  Connection connection("memory://localhost/");
  ConnectionPool& pool = pools::connections[connection];

  // Same broker, other spellings: same pool object.
  bool same = &pool == &pools::connections["memory://"] &&
              &pool == &pools::connections[Connection("memory://localhost")];
  std::printf("pool for %s; other spellings give the same pool: %s\n", connection.as_uri().c_str(),
              same ? "yes" : "no");

  {
    Lease<Connection> conn = pool.acquire();  // blocks until one is free
    std::printf("Got connection: %s\n", conn->as_uri().c_str());
  }  // the lease gives it back here
  // [groups]

  // Redis URLs normalise too: the db defaults to 0 and the port to 6379.
  auto a = ConnectionParams::parse("redis://localhost:6379");
  auto b = ConnectionParams::parse("redis://localhost/0");
  std::printf("redis://localhost:6379 == redis://localhost/0: %s (%s)\n", a == b ? "yes" : "no",
              a.as_uri().c_str());
  std::printf("amqp default: %s\n", ConnectionParams::parse("amqp://").as_uri().c_str());
  return same && a == b ? 0 : 1;
}
