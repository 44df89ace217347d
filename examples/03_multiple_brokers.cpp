// Two brokers at once: one pool each, acquired together.
#include <cstdio>
#include <respool/respool.hpp>

int main() {
  using namespace respool;

  // [brokers]
  Connection connection1("memory://broker-one/");
  Connection connection2("memory://broker-two/");

  Lease<Connection> conn1 = pools::connections[connection1].acquire();
  Lease<Connection> conn2 = pools::connections[connection2].acquire();
  // [brokers]

  Queue queue{"jobs", Exchange{"jobs"}, "jobs"};
  maybe_declare(queue, *conn1);
  maybe_declare(queue, *conn2);
  PublishOptions to_jobs;
  to_jobs.exchange = "jobs";
  to_jobs.routing_key = "jobs";
  Producer(*conn1).publish({{"to", "one"}}, to_jobs);
  Producer(*conn2).publish({{"to", "two"}}, to_jobs);
  Producer(*conn2).publish({{"to", "two again"}}, to_jobs);

  std::size_t one = conn1->default_channel().queue_size("jobs");
  std::size_t two = conn2->default_channel().queue_size("jobs");
  std::printf("%s: %zu message(s); %s: %zu message(s); groups: %zu pools\n", conn1->as_uri().c_str(), one,
              conn2->as_uri().c_str(), two, pools::connections.size());
  return one == 1 && two == 2 ? 0 : 1;
}
