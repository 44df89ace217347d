#!/usr/bin/python3
"""Python kombu on the other end of respool's interop tests.

Run with the system interpreter (/usr/bin/python3, which has kombu and redis):

  kombu_peer.py consume URL QUEUE [--count N] [--timeout S] [--exchange E]
                [--exchange-type T] [--routing-key RK] [--no-ack]
      Consumes N messages from QUEUE with kombu (SimpleQueue when no exchange
      is given, otherwise a Consumer on Queue(QUEUE, Exchange(E, T), RK)) and
      prints one JSON line per message:
        {"payload": <message.decode(), or null when it is bytes>,
         "body_b64": <base64 of message.body (decompressed by kombu)>,
         "content_type", "content_encoding", "headers", "delivery_info",
         "priority", "delivery_tag", "properties", "redelivered"}
      With a Consumer, "READY" is printed first, once kombu has subscribed
      (fanout) / started polling. Exit status 0 when N messages arrived, 3 on
      timeout.

  kombu_peer.py declare URL QUEUE --exchange E [--exchange-type T] [--routing-key RK]
      Declares the queue (and exchange and binding) with kombu and exits.

  kombu_peer.py publish URL < SPEC
      SPEC is a JSON list of messages, each an object with:
        exchange ("" = default exchange), exchange_type ("direct"),
        routing_key, body (any JSON value) or body_b64 (raw bytes),
        serializer (default "json"; ignored for body_b64), compression
        (null or "zlib"), headers ({}), priority (0), content_type,
        content_encoding (optional).
      Publishes them in order with kombu's Producer and prints "OK".
"""

import argparse
import base64
import json
import sys
import time

from kombu import Connection, Consumer, Exchange, Producer, Queue


def message_to_dict(message):
    try:
        payload = message.decode()
    except Exception as exc:  # pragma: no cover - reported to the test
        payload = {"decode_error": repr(exc)}
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = None
    body = message.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    return {
        "payload": payload,
        "body_b64": base64.b64encode(bytes(body)).decode("ascii"),
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "headers": message.headers,
        "delivery_info": {k: v for k, v in message.delivery_info.items()
                          if k in ("exchange", "routing_key", "redelivered")},
        "priority": message.properties.get("priority"),
        "delivery_tag": message.delivery_tag,
        "properties": message.properties,
        "redelivered": bool(message.delivery_info.get("redelivered")
                            or message.headers.get("redelivered")),
    }


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def make_queue(args):
    exchange = Exchange(args.exchange, type=args.exchange_type)
    return Queue(args.queue, exchange=exchange, routing_key=args.routing_key or "")


def consume(args):
    got = 0
    deadline = time.monotonic() + args.timeout
    with Connection(args.url) as conn:
        if not args.exchange:
            with conn.SimpleQueue(args.queue) as queue:
                while got < args.count:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return 3
                    try:
                        message = queue.get(block=True, timeout=min(remaining, 0.5))
                    except queue.Empty:
                        continue
                    emit(message_to_dict(message))
                    if not args.no_ack:
                        message.ack()
                    got += 1
            return 0

        received = []

        def on_message(body, message):
            received.append(message)

        with Consumer(conn, [make_queue(args)], callbacks=[on_message], no_ack=args.no_ack):
            # The first poll sends BRPOP / PSUBSCRIBE: do it before READY.
            try:
                conn.drain_events(timeout=0.2)
            except Exception:
                pass
            emit("READY")
            while got < args.count:
                while received and got < args.count:
                    message = received.pop(0)
                    emit(message_to_dict(message))
                    if not args.no_ack:
                        message.ack()
                    got += 1
                if got >= args.count:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return 3
                try:
                    conn.drain_events(timeout=min(remaining, 0.5))
                except Exception:
                    pass
    return 0


def declare(args):
    with Connection(args.url) as conn:
        make_queue(args)(conn.default_channel).declare()
    emit("OK")
    return 0


def publish(args):
    spec = json.load(sys.stdin)
    with Connection(args.url) as conn:
        producer = Producer(conn.default_channel)
        for item in spec:
            name = item.get("exchange", "")
            exchange = Exchange(name, type=item.get("exchange_type", "direct")) if name else ""
            kwargs = {
                "exchange": exchange,
                "routing_key": item.get("routing_key", ""),
                "headers": item.get("headers") or {},
                "priority": item.get("priority", 0),
                "compression": item.get("compression"),
                "declare": [exchange] if name else [],
            }
            if "content_type" in item:
                kwargs["content_type"] = item["content_type"]
            if "content_encoding" in item:
                kwargs["content_encoding"] = item["content_encoding"]
            if "body_b64" in item:
                body = base64.b64decode(item["body_b64"])
            else:
                body = item.get("body")
                kwargs["serializer"] = item.get("serializer", "json")
            producer.publish(body, **kwargs)
    emit("OK")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("consume")
    c.add_argument("url")
    c.add_argument("queue")
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--exchange", default="")
    c.add_argument("--exchange-type", default="direct")
    c.add_argument("--routing-key", default="")
    c.add_argument("--no-ack", action="store_true")
    d = sub.add_parser("declare")
    d.add_argument("url")
    d.add_argument("queue")
    d.add_argument("--exchange", required=True)
    d.add_argument("--exchange-type", default="direct")
    d.add_argument("--routing-key", default="")
    p = sub.add_parser("publish")
    p.add_argument("url")
    args = parser.parse_args()
    return {"consume": consume, "declare": declare, "publish": publish}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
