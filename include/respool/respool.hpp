// respool/respool.hpp — everything but async.hpp (Boost.Asio) and the
// optional redis/amqp transports, which are included on their own.
#pragma once

#include "respool/connection.hpp"
#include "respool/connection_params.hpp"
#include "respool/connection_pool.hpp"
#include "respool/entity.hpp"
#include "respool/errors.hpp"
#include "respool/lease.hpp"
#include "respool/message.hpp"
#include "respool/pool_group.hpp"
#include "respool/pools.hpp"
#include "respool/producer.hpp"
#include "respool/resource.hpp"
#include "respool/transport.hpp"
#include "respool/transport/memory.hpp"
