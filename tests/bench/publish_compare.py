#!/usr/bin/python3
"""One run, side by side: publishes/s of a 200-byte JSON message through
respool's pools::producers[c].acquire() + publish (tests/bench/publish_bench.cpp),
against redis-benchmark's LPUSH at the same client count (the broker's
ceiling) and Python kombu's producers[conn].acquire() + publish loop
(tests/bench/kombu_publish.py), on Redis and RabbitMQ. "redis-direct" publishes
to a named direct exchange (kombu's peer does the same); "amqp-batch" publishes
100 confirmed messages per Producer::publish_many (kombu's peer: one unconfirmed
publish per acquire, as always); "amqp-batch1000" the same with 1000 per batch.

usage: publish_compare.py BENCH_BINARY   (with RESPOOL_REDIS_URL, RESPOOL_REDIS_PORT,
                                           RESPOOL_AMQP_URL set, as tests/run's publish stage does)
Prints a markdown table.
"""
import json
import os
import pathlib
import subprocess
import sys

bench = sys.argv[1]
here = pathlib.Path(__file__).resolve().parent
threads = [1, 4, 16]
seconds = float(os.environ.get("RESPOOL_BENCH_SECONDS", "3"))


def respool_rates():
    out = subprocess.run([bench, "--benchmark_format=json", f"--benchmark_min_time={seconds}"],
                         check=True, capture_output=True, text=True).stdout
    rates = {}
    for b in json.loads(out)["benchmarks"]:
        if "error_occurred" in b and b["error_occurred"]:
            continue
        name = b["name"]  # BM_publish_redis/min_time:2.000/real_time/threads:4
        if "redis" in name:
            broker = "redis-direct" if "direct" in name else "redis"
        else:
            broker = ("amqp-noconfirm" if "noconfirm" in name
                      else "amqp-batch1000" if "batch1000" in name
                      else "amqp-batch" if "batch" in name else "amqp")
        rates[(broker, b["threads"])] = b["items_per_second"]
    return rates


def redis_benchmark(clients):
    port = os.environ["RESPOOL_REDIS_PORT"]
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", port, "-c", str(clients), "-n",
                          str(max(50000, 20000 * clients)), "-P", "1", "-t", "lpush", "-d", "200", "--csv"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith('"LPUSH'):
            return float(line.split(",")[1].strip('"'))
    raise SystemExit("redis-benchmark printed no LPUSH line:\n" + out)


def kombu(url, clients, exchange=""):
    out = subprocess.run(["/usr/bin/python3", str(here / "kombu_publish.py"), url, str(clients), str(seconds)]
                         + ([exchange] if exchange else []),
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


rates = respool_rates()
print("| broker | threads | respool msgs/s | redis-benchmark LPUSH/s | respool / redis-benchmark | kombu msgs/s | respool / kombu |")
print("|---|---|---|---|---|---|---|")
kombu_rates = {}
for broker, env in (("redis", "RESPOOL_REDIS_URL"), ("redis-direct", "RESPOOL_REDIS_URL"),
                    ("amqp", "RESPOOL_AMQP_URL"), ("amqp-batch", "RESPOOL_AMQP_URL"),
                    ("amqp-batch1000", "RESPOOL_AMQP_URL"),
                    ("amqp-noconfirm", "RESPOOL_AMQP_URL")):
    url = os.environ.get(env)
    if not url:
        continue
    for n in threads:
        ours = rates.get((broker, n))
        if ours is None:
            continue
        ceiling = redis_benchmark(n) if broker.startswith("redis") else None
        # kombu publishes without confirms either way: measure it once per thread count.
        exchange = "respool_bench_kombu_direct" if broker == "redis-direct" else ""
        if (env, n, exchange) not in kombu_rates:
            kombu_rates[(env, n, exchange)] = kombu(url, n, exchange)
        peer = kombu_rates[(env, n, exchange)]
        cells = [broker, str(n), f"{ours:,.0f}"]
        cells += [f"{ceiling:,.0f}", f"{ours / ceiling:.0%}"] if ceiling else ["—", "—"]
        cells += [f"{peer:,.0f}", f"{ours / peer:.1f}×"]
        print("| " + " | ".join(cells) + " |", flush=True)
