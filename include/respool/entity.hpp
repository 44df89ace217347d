// respool/entity.hpp — exchanges and queues, as kombu's Exchange and Queue.
#pragma once

#include <string>
#include <tuple>

namespace respool {

// An exchange: where producers publish. Types: "direct", "fanout", "topic".
struct Exchange {
  std::string name;
  std::string type = "direct";
  bool durable = true;
  bool auto_delete = false;

  friend bool operator==(const Exchange& a, const Exchange& b) {
    return std::tie(a.name, a.type, a.durable, a.auto_delete) ==
           std::tie(b.name, b.type, b.durable, b.auto_delete);
  }
  friend bool operator!=(const Exchange& a, const Exchange& b) { return !(a == b); }
};

// A queue bound to `exchange` with `routing_key`. Declaring a queue declares
// its exchange, the queue and the binding (kombu Queue.declare). A queue with
// an exchange of empty name is only declared (the default exchange routes to
// it by name).
struct Queue {
  std::string name;
  Exchange exchange;
  std::string routing_key;

  friend bool operator==(const Queue& a, const Queue& b) {
    return std::tie(a.name, a.exchange, a.routing_key) == std::tie(b.name, b.exchange, b.routing_key);
  }
  friend bool operator!=(const Queue& a, const Queue& b) { return !(a == b); }
};

}  // namespace respool
