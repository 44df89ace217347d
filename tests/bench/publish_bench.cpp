// Publishes/s of a 200-byte JSON message through
// pools::producers[c].acquire() + publish, at 1, 4 and 16 threads, on the
// brokers named by RESPOOL_REDIS_URL / RESPOOL_AMQP_URL (tests/run's
// `publish` stage starts them and runs this side by side with
// redis-benchmark and Python kombu: tests/bench/publish_compare.sh).
// The default exchange routes to the queue named by the routing key, so one
// publish is one LPUSH on Redis, one basic.publish (+ confirm) on AMQP;
// BM_publish_redis_direct publishes to a named direct exchange (kombu's
// binding lookup and the LPUSH, one server-side script: one round trip).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <respool/respool.hpp>
#include <respool/transport/amqp.hpp>
#include <respool/transport/redis.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

nlohmann::json message_200_bytes() {
  nlohmann::json body = {{"title", "No cellular coverage on the tube for 2012"},
                         {"ingress", "yadda yadda yadda"},
                         {"id", 0},
                         {"pad", ""}};
  body["pad"] = std::string(200 - body.dump().size(), 'x');
  return body;
}

const char* queue_name = "respool_bench_publish";

// The direct exchange of the *_direct benchmarks (bound to the queue, with
// the queue's name as routing key).
const char* exchange_name = "respool_bench_direct";

// batch > 1: publish_many() of `batch` messages per acquire (confirms in flight together).
void publish_loop(benchmark::State& state, const char* env, const char* query = "", const char* exchange = "",
                  std::size_t batch = 1) {
  const char* base = std::getenv(env);
  if (base == nullptr) {
    state.SkipWithError((std::string(env) + " not set").c_str());
    return;
  }
  const std::string url = std::string(base) + query;
  static const nlohmann::json body = message_200_bytes();
  respool::Connection connection(url);
  // A broker that fails (e.g. flow control holding back a flood of
  // unconfirmed publishes for longer than read_timeout) ends this benchmark
  // with its error, not the whole run.
  try {
    if (state.thread_index() == 0) {
      respool::pools::set_limit(64);
      auto conn = respool::pools::connections[connection].acquire();
      respool::Queue queue;
      queue.name = queue_name;
      if (*exchange != '\0') {
        queue.exchange = respool::Exchange{exchange, "direct"};
        queue.routing_key = queue_name;
      }
      conn->default_channel().declare(queue);
      conn->default_channel().purge(queue_name);
    }
    respool::PublishOptions options;
    options.routing_key = queue_name;
    options.exchange = exchange;
    // (redis://: the exchange's type lives in the connection, as in kombu:
    // each pooled connection learns it from this declare, once.)
    if (*exchange != '\0') options.declare.push_back(respool::Exchange{exchange, "direct"});
    auto& producers = respool::pools::producers[connection];
    const std::vector<nlohmann::json> bodies(batch, body);
    for (auto _ : state) {
      auto producer = producers.acquire();
      if (batch == 1)
        producer->publish(body, options);
      else
        producer->publish_many(bodies, options);
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch));
  if (state.thread_index() == 0) state.counters["bytes_per_msg"] = static_cast<double>(body.dump().size());
}

void BM_publish_redis(benchmark::State& state) { publish_loop(state, "RESPOOL_REDIS_URL"); }
void BM_publish_amqp(benchmark::State& state) { publish_loop(state, "RESPOOL_AMQP_URL"); }
// To a named direct exchange: kombu's binding lookup + push (one round trip).
void BM_publish_redis_direct(benchmark::State& state) {
  publish_loop(state, "RESPOOL_REDIS_URL", "", exchange_name);
}
// With confirms, 100 messages in flight per publish_many (one wait for their confirms).
void BM_publish_amqp_batch(benchmark::State& state) { publish_loop(state, "RESPOOL_AMQP_URL", "", "", 100); }
// The same with 1000 messages per publish_many (the broker's disk sync shared by more messages).
void BM_publish_amqp_batch1000(benchmark::State& state) {
  publish_loop(state, "RESPOOL_AMQP_URL", "", "", 1000);
}
// Without publisher confirms (kombu's default: a publish returns once written).
void BM_publish_amqp_noconfirm(benchmark::State& state) {
  publish_loop(state, "RESPOOL_AMQP_URL", "?confirm_publish=0");
}

BENCHMARK(BM_publish_redis)->Threads(1)->Threads(4)->Threads(16)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_publish_redis_direct)->Threads(1)->Threads(4)->Threads(16)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_publish_amqp)->Threads(1)->Threads(4)->Threads(16)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_publish_amqp_batch)->Threads(1)->Threads(4)->Threads(16)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_publish_amqp_batch1000)->Threads(1)->Threads(4)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_publish_amqp_noconfirm)->Threads(1)->Threads(4)->Threads(16)->UseRealTime()->MinTime(2.0);

}  // namespace

int main(int argc, char** argv) {
  // glibc skips atomics until a process has had a second thread: start one
  // first so single-thread figures are honest.
  std::thread([] {}).join();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // Leave the queues empty for the next run.
  for (const char* env : {"RESPOOL_REDIS_URL", "RESPOOL_AMQP_URL"}) {
    if (const char* url = std::getenv(env)) {
      try {
        respool::Connection c(url);
        c.default_channel().purge(queue_name);
      } catch (const std::exception&) {
      }
    }
  }
}
