// respool/connection_pool.hpp — ConnectionPool, a Resource<Connection> (kombu ConnectionPool).
#pragma once

#include <cstddef>
#include <string_view>

#include "respool/connection.hpp"
#include "respool/connection_params.hpp"
#include "respool/resource.hpp"

namespace respool {

// A pool of connections to one broker. Connections are created unconnected
// and connect on first use; an idle connection found dead when handed out is
// closed and replaced transparently. At its limit, acquire throws
// connection_limit_exceeded (zero timeout) or connection_acquire_timeout
// (expired wait; catchable as connection_limit_exceeded and acquire_timeout).
// Thread safety: as Resource.
class ConnectionPool : public Resource<Connection> {
 public:
  // A pool of `limit` connections (0 = unlimited) for `params`, `preload` of
  // them created (unconnected) now. Throws unknown_transport if no transport
  // serves the scheme.
  ConnectionPool(ConnectionParams params, std::size_t limit, std::size_t preload = 0)
      : Resource<Connection>(make_options(params, limit, preload), /*connection_errors=*/true),
        params_(std::move(params)) {}

  // Throws invalid_url / unknown_transport.
  explicit ConnectionPool(std::string_view url, std::size_t limit = 0)
      : ConnectionPool(ConnectionParams::parse(url), limit) {}

  // The normalised parameters every connection of the pool uses.
  const ConnectionParams& params() const noexcept { return params_; }

 private:
  static Options make_options(const ConnectionParams& params, std::size_t limit, std::size_t preload) {
    transport::memory::ensure_registered();
    if (!transport::find_transport(params.transport())) throw unknown_transport(params.transport());
    Options o;
    o.limit = limit;
    o.preload = preload;
    o.create = [params] { return Connection(params); };
    o.close = [](Connection& c) { c.close(); };
    // Never-connected connections are fine (they connect lazily); open ones must still be alive.
    o.validate = [](Connection& c) { return !c.connected() || c.alive(); };
    o.name = params.as_uri();  // in limit_exceeded messages; the password masked
    return o;
  }

  ConnectionParams params_;
};

}  // namespace respool
