# shellcheck shell=bash
# Sourced by .ci/run once redis-server and redis-cli are installed: starts
# a Redis Cluster of three masters (no replicas) on free loopback ports, each
# node in a directory of its own under one temporary directory, with
# appendonly yes and appendfsync always (as the standalone test server);
# waits until every node reports cluster_state:ok; and exports
# SOTTO_TEST_REDIS_CLUSTER_URL, the three node URLs separated by commas, for
# the Redis store's tests on a Cluster (crates/sotto-relay/src/store/redis/
# tests.rs, tests/relay/redis_cluster_push.rs), which fail under CI without
# it. It defines stop_redis_cluster, which stops the nodes and removes the
# directory: .ci/run's exit trap calls it. If the cluster cannot be
# started, it prints the nodes' logs and exits 1.

redis_cluster_dir=$(mktemp -d)
redis_cluster_pids=()
redis_cluster_ports=()

stop_redis_cluster() {
    local pid
    for pid in "${redis_cluster_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${redis_cluster_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    redis_cluster_pids=()
    rm -rf "$redis_cluster_dir"
}

redis_cluster_fail() {
    local log
    echo "could not start a Redis Cluster: $1; the nodes' logs:" >&2
    for log in "$redis_cluster_dir"/node*/redis.log "$redis_cluster_dir"/create.log; do
        if [[ -f "$log" ]]; then
            echo "-- $log" >&2
            cat "$log" >&2 || true
        fi
    done
    stop_redis_cluster
    exit 1
}

# Starts node $1 on a free loopback port: random ones are tried until a
# server of ours answers (its process id in INFO, so another server already
# listening there is not taken for ours). Ports stay below 50000: a node's
# cluster bus listens on its port + 10000.
redis_cluster_start_node() {
    local dir="$redis_cluster_dir/node$1" port pid info
    mkdir -p "$dir"
    for _ in $(seq 20); do
        port=$((20000 + RANDOM % 30000))
        redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' \
            --appendonly yes --appendfsync always --daemonize no \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 5000 --logfile "$dir/redis.log" &
        pid=$!
        for _ in $(seq 50); do
            info=$(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' || true)
            if [[ $'\n'"$info"$'\n' == *$'\n'"process_id:$pid"$'\n'* ]]; then
                redis_cluster_pids+=("$pid")
                redis_cluster_ports+=("$port")
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    return 1
}

for redis_cluster_n in 1 2 3; do
    redis_cluster_start_node "$redis_cluster_n" ||
        redis_cluster_fail "node $redis_cluster_n found no free loopback port"
done

redis_cluster_nodes=()
for redis_cluster_port in "${redis_cluster_ports[@]}"; do
    redis_cluster_nodes+=("127.0.0.1:$redis_cluster_port")
done
redis-cli --cluster create "${redis_cluster_nodes[@]}" --cluster-replicas 0 --cluster-yes \
    >"$redis_cluster_dir/create.log" 2>&1 ||
    redis_cluster_fail "redis-cli --cluster create failed"

# Every node agrees the cluster is up (all slots assigned, nodes met).
redis_cluster_ok=""
for _ in $(seq 100); do
    redis_cluster_ok=yes
    for redis_cluster_port in "${redis_cluster_ports[@]}"; do
        if ! redis-cli -p "$redis_cluster_port" cluster info 2>/dev/null | tr -d '\r' |
            grep -qx 'cluster_state:ok'; then
            redis_cluster_ok=""
            break
        fi
    done
    if [[ -n "$redis_cluster_ok" ]]; then
        break
    fi
    sleep 0.1
done
if [[ -z "$redis_cluster_ok" ]]; then
    redis_cluster_fail "cluster_state is not ok on every node after 10 s"
fi

SOTTO_TEST_REDIS_CLUSTER_URL=""
for redis_cluster_node in "${redis_cluster_nodes[@]}"; do
    SOTTO_TEST_REDIS_CLUSTER_URL+="${SOTTO_TEST_REDIS_CLUSTER_URL:+,}redis://$redis_cluster_node"
done
export SOTTO_TEST_REDIS_CLUSTER_URL
echo "Redis Cluster of 3 masters on $SOTTO_TEST_REDIS_CLUSTER_URL (pids ${redis_cluster_pids[*]})"
