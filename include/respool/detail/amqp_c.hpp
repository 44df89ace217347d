// respool/detail/amqp_c.hpp — the rabbitmq-c headers, in either layout:
// <rabbitmq-c/amqp.h> (rabbitmq-c 0.12 and later) or <amqp.h> (0.11 and
// earlier, e.g. Debian 12). Defines RESPOOL_AMQP_HAS_TLS to 1 when rabbitmq-c
// was built with its OpenSSL socket (amqps://), else to 0.
#pragma once

#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/framing.h>
#include <rabbitmq-c/tcp_socket.h>
#if __has_include(<rabbitmq-c/ssl_socket.h>)
#include <rabbitmq-c/ssl_socket.h>
#define RESPOOL_AMQP_HAS_TLS 1
#endif
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#if __has_include(<amqp_ssl_socket.h>)
#include <amqp_ssl_socket.h>
#define RESPOOL_AMQP_HAS_TLS 1
#endif
#endif

#ifndef RESPOOL_AMQP_HAS_TLS
#define RESPOOL_AMQP_HAS_TLS 0
#endif
