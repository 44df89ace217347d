#!/usr/bin/python3
"""kombu on the other end of respool's amqp:// transport (interop tests).

Run with the system interpreter (python3-kombu 5.x, python3-amqp):

  kombu_amqp_peer.py URL consume QUEUE N [TIMEOUT]
      Consume N messages from QUEUE (which must exist) with kombu's Consumer,
      acknowledge them and print one JSON object per message:
        {"body": <payload decoded by kombu: JSON value or text>,
         "body_hex": <hex of the decoded payload when it is bytes, else null>,
         "bytes_hex": <hex of the body bytes, after kombu's decompression>,
         "content_type", "content_encoding", "headers",
         "delivery_info": {"exchange", "routing_key"},
         "priority", "delivery_mode"}
      Exits 3 if fewer than N messages arrived within TIMEOUT seconds (default 10).

  kombu_amqp_peer.py URL publish EXCHANGE ROUTING_KEY
      Publish the fixed set below with kombu's Producer (no declarations) and
      print {"published": [names...]}:
        json    {"kind": "json", "n": 1, "text": "h\u00e9llo", "list": [1, 2, 3]}
        zlib    the same payload, compression='zlib'
        raw     bytes 00 01 02 "binary" ff, serializer='raw'
        headers a JSON payload with custom headers of every JSON type
        priority a JSON payload with priority=5
        text    "plain text \u00e9" with content_type text/plain

  kombu_amqp_peer.py URL declare QUEUE EXCHANGE TYPE ROUTING_KEY
      Declare Queue(QUEUE, Exchange(EXCHANGE, TYPE), ROUTING_KEY) with kombu's
      defaults (durable, not exclusive, not auto-delete); prints {"ok": true}
      or {"ok": false, "error": "..."} when the broker finds them inequivalent.
"""
import json
import socket
import sys

from kombu import Connection, Consumer, Exchange, Producer, Queue

PAYLOAD = {"kind": "json", "n": 1, "text": "h\u00e9llo", "list": [1, 2, 3]}
RAW = b"\x00\x01\x02binary\xff"
HEADERS = {
    "x-str": "v\u00e9",
    "x-int": 42,
    "x-big": 2 ** 40,
    "x-neg": -7,
    "x-bigneg": -(2 ** 40),
    "x-bool": True,
    "x-float": 2.5,
    "x-nested": {"a": 1, "b": "c"},
    "x-list": [1, "two"],
}


def jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def body_bytes(message):
    # py-amqp hands text bodies (content_encoding utf-8) over as str, and
    # kombu's Message has already decompressed a compressed body.
    body = message.body
    if isinstance(body, str):
        return body.encode(message.content_encoding or "utf-8")
    return bytes(body)


def consume(url, queue_name, count, timeout):
    got = []

    def on_message(body, message):
        if len(got) >= count:  # an extra prefetched message: leave it (requeued on close)
            return
        decoded = message.decode()
        record = {
            "body": decoded if not isinstance(decoded, (bytes, bytearray)) else None,
            "body_hex": decoded.hex() if isinstance(decoded, (bytes, bytearray)) else None,
            "bytes_hex": body_bytes(message).hex(),
            "content_type": message.content_type,
            "content_encoding": message.content_encoding,
            "headers": jsonable(message.headers),
            "delivery_info": {
                "exchange": message.delivery_info.get("exchange"),
                "routing_key": message.delivery_info.get("routing_key"),
            },
            "priority": message.properties.get("priority"),
            "delivery_mode": message.properties.get("delivery_mode"),
        }
        message.ack()
        got.append(record)
        print(json.dumps(record), flush=True)

    with Connection(url) as conn:
        queue = Queue(queue_name, no_declare=True)
        accept = ["json", "application/json", "application/data", "text/plain"]
        with Consumer(conn, queues=[queue], callbacks=[on_message], accept=accept, prefetch_count=count):
            while len(got) < count:
                try:
                    conn.drain_events(timeout=timeout)
                except socket.timeout:
                    return 3
    return 0


def publish(url, exchange, routing_key):
    names = []
    with Connection(url) as conn:
        producer = Producer(conn.channel(), auto_declare=False)

        def send(name, body, **kwargs):
            producer.publish(body, exchange=exchange, routing_key=routing_key, **kwargs)
            names.append(name)

        send("json", PAYLOAD, serializer="json")
        send("zlib", PAYLOAD, serializer="json", compression="zlib")
        send("raw", RAW, serializer="raw")
        send("headers", {"kind": "headers"}, serializer="json", headers=dict(HEADERS))
        send("priority", {"kind": "priority"}, serializer="json", priority=5)
        send("text", "plain text \u00e9", content_type="text/plain", content_encoding="utf-8")
    print(json.dumps({"published": names}), flush=True)
    return 0


def declare(url, queue_name, exchange, exchange_type, routing_key):
    with Connection(url) as conn:
        try:
            Queue(queue_name, Exchange(exchange, type=exchange_type), routing_key=routing_key)(conn.channel()).declare()
        except Exception as exc:  # the broker's channel error
            print(json.dumps({"ok": False, "error": str(exc)}), flush=True)
            return 0
    print(json.dumps({"ok": True}), flush=True)
    return 0


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, command, args = argv[1], argv[2], argv[3:]
    if command == "consume" and len(args) in (2, 3):
        return consume(url, args[0], int(args[1]), float(args[2]) if len(args) == 3 else 10.0)
    if command == "publish" and len(args) == 2:
        return publish(url, args[0], args[1])
    if command == "declare" and len(args) == 4:
        return declare(url, *args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
