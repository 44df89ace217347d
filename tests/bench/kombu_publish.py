#!/usr/bin/python3
"""Python kombu's publish loop, the peer of tests/bench/publish_bench.cpp:
producers[conn].acquire() + publish of the same 200-byte JSON message to the
default exchange, N threads for a fixed time. Prints msgs/s.

usage: kombu_publish.py URL THREADS SECONDS [EXCHANGE]
With EXCHANGE, publishes to that direct exchange (declared, bound to the queue
with the queue's name as routing key) instead of the default exchange.
"""
import json
import sys
import threading
import time

from kombu import Connection, Exchange, Queue
from kombu.pools import producers, set_limit

url, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
exchange = sys.argv[4] if len(sys.argv) > 4 else ""
queue = "respool_bench_kombu"
body = {"title": "No cellular coverage on the tube for 2012", "ingress": "yadda yadda yadda", "id": 0, "pad": ""}
body["pad"] = "x" * (200 - len(json.dumps(body, separators=(",", ":"))))
set_limit(64)
connection = Connection(url)
with connection.channel() as channel:
    if exchange:
        Queue(queue, Exchange(exchange, type="direct"), routing_key=queue, channel=channel).declare()
    else:
        Queue(queue, channel=channel).declare()
    channel.queue_purge(queue)

counts = [0] * threads
stop = threading.Event()


def run(i):
    n = 0
    while not stop.is_set():
        with producers[connection].acquire(block=True) as producer:
            producer.publish(body, exchange=exchange, routing_key=queue, serializer="json")
        n += 1
    counts[i] = n


workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
start = time.perf_counter()
for w in workers:
    w.start()
time.sleep(seconds)  # the measuring window
stop.set()
for w in workers:
    w.join()
elapsed = time.perf_counter() - start
print(f"{sum(counts) / elapsed:.0f}")
with connection.channel() as channel:
    channel.queue_purge(queue)
