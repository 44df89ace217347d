// sentinel:// (kombu's Redis Sentinel transport) against real processes this
// test starts on loopback: a master, two replicas and three sentinels
// (redis-server --sentinel) with a short down-after-milliseconds. A pool
// publishes with wait_replicas=1 (each publish is on a replica too before it
// is reported sent); the master is killed (SIGKILL) in the middle; publishes
// fail loudly until the sentinels promote a replica, then resume on it.
// Every message reported as sent is on the new master. Python kombu's
// Sentinel transport reads what respool publishes.
#include <respool/respool.hpp>
#include <respool/transport/redis.hpp>
#include <set>

#include "redis_servers.hpp"

using namespace respool;
using namespace std::chrono_literals;
using namespace respool_test;

namespace {

struct sentinel_cluster {
  scratch_dir dir;
  std::uint16_t master_port = free_port();
  std::vector<std::uint16_t> replica_ports{free_port(), free_port()};
  std::vector<std::uint16_t> sentinel_ports{free_port(), free_port(), free_port()};
  std::unique_ptr<own_server> master;
  std::vector<std::unique_ptr<own_server>> replicas, sentinels;

  static std::vector<std::string> server_args(std::uint16_t port, const std::string& dir) {
    return {"--port", std::to_string(port), "--bind",    "127.0.0.1", "--save", "", "--appendonly",
            "no",     "--logfile",          "/dev/null", "--dir",     dir};
  }

  sentinel_cluster() {
    master = std::make_unique<own_server>(server_args(master_port, dir.path));
    for (auto port : replica_ports) {
      auto args = server_args(port, dir.path);
      args.insert(args.end(), {"--replicaof", "127.0.0.1", std::to_string(master_port)});
      replicas.push_back(std::make_unique<own_server>(args));
    }
    for (std::size_t i = 0; i < sentinel_ports.size(); ++i) {
      const std::string config = dir.path + "/sentinel" + std::to_string(i) + ".conf";
      std::ofstream(config) << "port " << sentinel_ports[i] << "\nbind 127.0.0.1\n"
                            << "dir " << dir.path << "\n"
                            << "sentinel monitor mymaster 127.0.0.1 " << master_port << " 2\n"
                            << "sentinel down-after-milliseconds mymaster 1000\n"
                            << "sentinel failover-timeout mymaster 5000\n"
                            << "sentinel parallel-syncs mymaster 2\n";
      sentinels.push_back(std::make_unique<own_server>(std::vector<std::string>{
          config, "--sentinel", "--logfile", dir.path + "/sentinel" + std::to_string(i) + ".log"}));
    }
    // Ready: both replicas in sync, every sentinel knows both replicas and the two other sentinels.
    wait_until(
        [&] {
          for (auto port : replica_ports) {
            raw_redis r(port);
            if (r.command({"INFO", "replication"}).find("master_link_status:up") == std::string::npos)
              return false;
          }
          for (auto port : sentinel_ports) {
            raw_redis s(port);
            if (s.count({"SENTINEL", "replicas", "mymaster"}) != 2 ||
                s.count({"SENTINEL", "sentinels", "mymaster"}) != 2)
              return false;
          }
          return true;
        },
        60s, "the replicas and sentinels to be ready");
  }

  std::string url(const std::string& query) const {
    std::string out;
    for (std::size_t i = 0; i < sentinel_ports.size(); ++i)
      out += (i ? ";sentinel://127.0.0.1:" : "sentinel://127.0.0.1:") + std::to_string(sentinel_ports[i]) +
             (i == 0 ? query : std::string());
    return out;
  }

  // The master's port as the first sentinel says.
  std::uint16_t reported_master() {
    raw_redis s(sentinel_ports[0]);
    const std::string addr = s.command({"SENTINEL", "get-master-addr-by-name", "mymaster"});
    auto space = addr.find(' ');
    return space == std::string::npos ? 0 : static_cast<std::uint16_t>(std::stoi(addr.substr(space + 1)));
  }
};

PublishOptions to(const std::string& queue) {
  PublishOptions o;
  o.routing_key = queue;
  return o;
}

}  // namespace

TEST_CASE("sentinel: connect asks the sentinels for the master and checks its role", "[sentinel]") {
  sentinel_cluster cluster;
  Connection connection(cluster.url("?master_name=mymaster"));
  connection.connect();
  Producer(connection).publish({{"hello", "sentinel"}}, to("sentinel-hello"));
  raw_redis master(cluster.master_port);
  CHECK(master.command({"LLEN", "sentinel-hello"}) == "1");

  // A sentinel that is down is skipped (the next one answers).
  cluster.sentinels[0]->kill();
  Connection second(cluster.url("?master_name=mymaster"));
  second.connect();
  CHECK(second.active_params() == second.params());

  // A master name no sentinel knows: connection_failed naming each sentinel.
  Connection unknown(cluster.url("?master_name=nosuchmaster&sentinel_password=s3cret"));
  try {
    unknown.connect();
    FAIL("connected to a master that does not exist");
  } catch (const error& e) {
    CHECK(e.code() == errc::connection_failed);
    CHECK_THAT(e.what(), Catch::Contains("nosuchmaster") && !Catch::Contains("s3cret"));
  }
}

TEST_CASE(
    "sentinel: the master killed mid-publish, publishing resumes on the promoted replica, nothing "
    "reported sent is lost",
    "[sentinel][failover]") {
  sentinel_cluster cluster;
  const std::string url =
      cluster.url("?master_name=mymaster&wait_replicas=1&socket_timeout=2&connect_timeout=2");
  const std::string queue = "sentinel-failover";
  ConnectionPool pool(url, 2);
  std::set<int> reported_sent;
  int failures = 0;
  const int total = 300, kill_at = 100;
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  for (int i = 0; i < total; ++i) {
    if (i == kill_at) cluster.master->kill();
    for (;;) {  // a message is retried until it is reported sent
      REQUIRE(std::chrono::steady_clock::now() < give_up);
      try {
        auto connection = pool.acquire(10s);
        try {
          Producer(*connection).publish({{"n", i}}, to(queue));
          reported_sent.insert(i);
          break;
        } catch (const error& e) {
          ++failures;  // loud: a connection the kill cut, a stale master, a replica not yet in sync
          INFO(e.what());
          CHECK((e.code() == errc::connection_lost || e.code() == errc::connection_failed ||
                 e.code() == errc::channel_error));
          // kombu's retry policy (ensure_connection's backoff) until the sentinels promote a replica.
          try {
            connection->ensure_connection(200, 20ms, 20ms, 100ms);
          } catch (const error&) {
          }
        }
      } catch (const error& e) {
        ++failures;
        INFO(e.what());
      }
    }
  }
  INFO("failures " << failures);
  CHECK(reported_sent.size() == static_cast<std::size_t>(total));
  CHECK(failures > 0);  // the kill was seen, loudly
  // The sentinel that led the failover told the pool; the first sentinel may
  // learn of the new master only from the leader's next hello (every 2 s).
  wait_until([&] { return cluster.reported_master() != cluster.master_port; }, 30s,
             "the first sentinel to report the promoted master");
  const std::uint16_t promoted = cluster.reported_master();
  CHECK((promoted == cluster.replica_ports[0] || promoted == cluster.replica_ports[1]));

  // Everything reported sent is on the new master (read through sentinel:// too).
  raw_redis new_master(promoted);
  CHECK(new_master.command({"ROLE"}).compare(0, 6, "master") == 0);
  Connection reader(cluster.url("?master_name=mymaster"));
  std::set<int> found;
  while (auto m = reader.default_channel().get(queue, true)) found.insert(m->payload()["n"].get<int>());
  for (int n : reported_sent) {
    INFO("message " << n);
    CHECK(found.count(n) == 1);
  }
}

TEST_CASE("sentinel: Python kombu's Sentinel transport reads what respool publishes", "[sentinel][kombu]") {
  sentinel_cluster cluster;
  Connection connection(cluster.url("?master_name=mymaster"));
  Producer(connection).publish({{"from", "respool"}}, to("sentinel-kombu"));
  // kombu: the same sentinels, master_name from transport_options.
  std::string kombu_url;
  for (std::size_t i = 0; i < cluster.sentinel_ports.size(); ++i)
    kombu_url +=
        (i ? ";" : "") + std::string("sentinel://127.0.0.1:") + std::to_string(cluster.sentinel_ports[i]);
  const std::string script =
      "import json, sys, kombu\n"
      "c = kombu.Connection(sys.argv[1], transport_options={'master_name': 'mymaster'})\n"
      "q = c.SimpleQueue('sentinel-kombu')\n"
      "m = q.get(timeout=20)\n"
      "m.ack()\n"
      "print(json.dumps(m.payload))\n"
      "c.SimpleQueue('sentinel-back').put({'from': 'kombu'})\n";
  auto [status, lines] = run(python() + " -c " + shell_arg(script) + " " + shell_arg(kombu_url));
  REQUIRE(status == 0);
  REQUIRE(lines.size() == 1);
  CHECK(nlohmann::json::parse(lines[0]) == nlohmann::json{{"from", "respool"}});
  auto m = connection.default_channel().get("sentinel-back", true);
  REQUIRE(m);
  CHECK(m->payload() == nlohmann::json{{"from", "kombu"}});
}
