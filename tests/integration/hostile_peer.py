#!/usr/bin/python3
"""Writes hostile messages, each followed by a good one, for
tests/integration/hostile_messages_test.cpp (and captures kombu messages for
the fuzz corpora). Run with /usr/bin/python3 (kombu 5.2.4, redis, amqp).

  hostile_peer.py write URL QUEUE
      Writes, in this order, to QUEUE (the default exchange), with kombu's
      Producer where kombu can write the message and by hand where it cannot
      (a raw Redis item, an AMQP header frame built byte by byte):
        0 headers nesting DEPTH levels (Redis: 100,000 levels; AMQP: as deep
          as fits in one 128 KiB frame, 18,000 tables)
        2 a JSON body nesting 100,000 levels (200 KB)
        4 a zlib bomb: 200 MiB of zeros in about 200 KB, content type text/plain
        6 a pickle body (kombu's pickle serializer)
        8 raw bytes (application/data, binary)
       10 "héllo wörld" in UTF-16 (text/plain, content encoding utf-16)
      and the good message {"good": n} (kombu's json serializer) at 1, 3, 5,
      7, 9, 11 (n = 1..6). Prints "OK".

  hostile_peer.py capture-redis URL QUEUE DIR / capture-amqp URL QUEUE DIR
      Publishes kombu messages of every kind respool decodes (json, zlib,
      text, utf-16, binary, pickle, nested headers) and saves what the broker
      hands back: Redis queue items (DIR/redis_envelope/), AMQP content
      header properties (DIR/amqp_table/) and bodies with their metadata
      (DIR/payload/). Seeds for tests/fuzz/corpus/.
"""

import os
import struct
import sys
import zlib

from kombu import Connection, Exchange, Producer, Queue

DEPTH_REDIS = 100000
DEPTH_AMQP = 18000
DEEP_BODY = b"[" * 100000 + b"]" * 100000
BOMB = zlib.compress(b"\0" * (200 << 20), 9)
UTF16 = "h\u00e9llo w\u00f6rld".encode("utf-16")


def hostile_kombu_messages():
    """(kwargs for Producer.publish) for messages 2..10 (even)."""
    return [
        dict(body=DEEP_BODY, content_type="application/json", content_encoding="utf-8"),
        dict(body=BOMB, content_type="text/plain", content_encoding="utf-8",
             headers={"compression": "application/x-gzip"}),
        dict(body={"pickled": [1, 2, 3]}, serializer="pickle"),
        dict(body=b"\x00\xff\x10raw bytes", content_type="application/data", content_encoding="binary"),
        dict(body=UTF16, content_type="text/plain", content_encoding="utf-16"),
    ]


def redis_deep_item(queue):
    headers = '{"a": ' * DEPTH_REDIS + "1" + "}" * DEPTH_REDIS
    return ('{"body": "eyJiYWQiOiAxfQ==", "content-encoding": "utf-8", "content-type": "application/json", '
            '"headers": ' + headers + ', "properties": {"delivery_mode": 2, "delivery_info": '
            '{"exchange": "", "routing_key": "' + queue + '"}, "priority": 0, "body_encoding": "base64", '
            '"delivery_tag": "0b0e5f7c-2d3e-4f00-8a1b-1234567890ab"}}')


def amqp_deep_properties():
    """Basic properties: content_type, content_encoding and a header table
    nesting DEPTH_AMQP tables ({"a": {"a": ... {"a": 1}}})."""
    inner = b"\x01aI" + struct.pack(">i", 1)  # "a" -> I32 1
    table = inner
    for _ in range(DEPTH_AMQP - 1):
        table = b"\x01aF" + struct.pack(">I", len(table)) + table
    flags = (1 << 15) | (1 << 14) | (1 << 13)
    out = struct.pack(">H", flags)
    for text in (b"application/json", b"utf-8"):
        out += struct.pack("B", len(text)) + text
    return out + struct.pack(">I", len(table)) + table


def write(url, queue):
    with Connection(url) as conn:
        producer = Producer(conn.default_channel)
        amqp = conn.transport_cls in ("amqp", "pyamqp") or url.startswith("amqp")
        q = Queue(queue, Exchange(""), routing_key=queue, queue_arguments={"x-expires": 600000} if amqp else None)
        q(conn.default_channel).declare()

        def good(n):
            producer.publish({"good": n}, routing_key=queue, exchange="", serializer="json")

        if amqp:
            channel = conn.default_channel
            message = channel.prepare_message(b'{"bad": 1}', content_type="application/json",
                                              content_encoding="utf-8")
            props = amqp_deep_properties()
            message._serialize_properties = lambda: props
            channel.basic_publish(message, exchange="", routing_key=queue)
        else:
            conn.default_channel.client.lpush(queue, redis_deep_item(queue))
        good(1)
        for n, kwargs in enumerate(hostile_kombu_messages(), start=2):
            producer.publish(routing_key=queue, exchange="", **kwargs)
            good(n)
    print("OK")


def capture_messages():
    nested = {"level": 1}
    for i in range(2, 30):
        nested = {"level": i, "inner": nested, "list": [i, str(i), None, True, 1.5]}
    return [
        dict(body={"id": 7, "name": "caf\u00e9 \U0001F600", "list": [1, 2.5, None, True]}),
        dict(body={"z": list(range(50))}, compression="zlib"),
        dict(body="plain text", headers={"x-trace": "abc", "n": 42}),
        dict(body=UTF16, content_type="text/plain", content_encoding="utf-16"),
        dict(body="l\u00e4tin".encode("latin-1"), content_type="text/plain", content_encoding="latin-1"),
        dict(body=b"\x00\xff\x10raw bytes", content_type="application/data", content_encoding="binary"),
        dict(body={"pickled": [1, 2, 3]}, serializer="pickle"),
        dict(body={"deep": nested}, headers={"nested": nested, "big": 2 ** 40, "neg": -5, "f": 0.25}),
        dict(body=[[[[[]]]]], compression="zlib", headers={"compression-note": "zlib"}),
        dict(body={"p": 5}, priority=5),
    ]


def save(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def payload_seed(body, content_type, content_encoding, headers):
    """The payload fuzzer's input: one line of metadata, then the body."""
    compression = (headers or {}).get("compression") or ""
    meta = "%s\t%s\t%s\n" % (content_type or "", content_encoding or "", compression)
    return meta.encode("utf-8", "replace") + bytes(body)


def capture(url, queue, directory, kind):
    with Connection(url) as conn:
        channel = conn.default_channel
        producer = Producer(channel)
        amqp = kind == "amqp"
        Queue(queue, Exchange(""), routing_key=queue,
              queue_arguments={"x-expires": 600000} if amqp else None)(channel).declare()
        messages = capture_messages()
        for kwargs in messages:
            producer.publish(routing_key=queue, exchange="", **kwargs)
        if amqp:
            import amqp as pyamqp
            seen = []
            original = pyamqp.serialization.GenericContent.inbound_header

            def inbound_header(self, buf, offset=0):
                seen.append(bytes(buf[offset + 12:]))
                return original(self, buf, offset)

            pyamqp.serialization.GenericContent.inbound_header = inbound_header
            for i in range(len(messages)):
                m = channel.basic_get(queue, no_ack=True)
                save(os.path.join(directory, "amqp_table"), "kombu-amqp-%02d" % i, seen[-1])
                # py-amqp decodes a body that has a content encoding: encode it back.
                raw = m.body if isinstance(m.body, bytes) else m.body.encode(m.content_encoding or "utf-8")
                save(os.path.join(directory, "payload"), "kombu-amqp-%02d" % i,
                     payload_seed(raw, m.content_type, m.content_encoding, m.headers))
            pyamqp.serialization.GenericContent.inbound_header = original
        else:
            import base64
            import json
            client = channel.client
            for i in range(len(messages)):
                item = client.rpop(queue)
                if item is None:
                    for step in ("\x06\x163", "\x06\x166", "\x06\x169"):
                        item = client.rpop(queue + step)
                        if item is not None:
                            break
                save(os.path.join(directory, "redis_envelope"), "kombu-redis-%02d" % i, item)
                env = json.loads(item)
                save(os.path.join(directory, "payload"), "kombu-redis-%02d" % i,
                     payload_seed(base64.b64decode(env["body"]), env.get("content-type"),
                                  env.get("content-encoding"), env.get("headers")))
    print("OK")


def main():
    command = sys.argv[1]
    if command == "write":
        write(sys.argv[2], sys.argv[3])
    elif command == "capture-redis":
        capture(sys.argv[2], sys.argv[3], sys.argv[4], "redis")
    elif command == "capture-amqp":
        capture(sys.argv[2], sys.argv[3], sys.argv[4], "amqp")
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main()
