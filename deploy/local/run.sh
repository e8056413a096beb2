#!/usr/bin/env bash
# The gateway on one machine, no Docker: redis-server, two gateway replicas and
# a load balancer with SSE settings (nginx or HAProxy), all on 127.0.0.1.
#
#   deploy/local/run.sh              run until Ctrl-C
#   deploy/local/run.sh --smoke      start, run the end-to-end check, stop
#   LB=haproxy deploy/local/run.sh   pick the load balancer (auto: haproxy, then nginx)
#
#   127.0.0.1:8080       load balancer: GET /events
#   127.0.0.1:8081/9091  replica a (public / internal: /metrics /livez /readyz)
#   127.0.0.1:8082/9092  replica b
#   127.0.0.1:6390       redis-server (AOF on, no RDB snapshots, in a temp dir)
#   127.0.0.1:9099       Prometheus, when a prometheus binary is installed
#
# Every process started here runs in its own session (setsid: Ctrl-C reaches
# this script only) and is stopped on exit, by PID, with one SIGTERM (the
# replicas drain) and SIGKILL only if it does not exit in time.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DEPLOY=$(cd "$HERE/.." && pwd)

# Ports are fixed in nginx.conf, haproxy.cfg and prometheus.yml too.
LB_PORT=8080
A_PORT=8081 A_INTERNAL=9091
B_PORT=8082 B_INTERNAL=9092
REDIS_PORT=6390
PROM_PORT=9099

MODE=run
case "${1:-}" in
  --smoke) MODE=smoke ;;
  '') ;;
  *) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
esac

LB=${LB:-auto}
if [ "$LB" = auto ]; then
  if command -v haproxy >/dev/null 2>&1; then LB=haproxy
  elif command -v nginx >/dev/null 2>&1; then LB=nginx
  else echo "need haproxy or nginx on PATH (apt-get install haproxy)" >&2; exit 1
  fi
fi
case "$LB" in haproxy|nginx) ;; *) echo "LB must be haproxy or nginx" >&2; exit 2 ;; esac
for bin in redis-server node "$LB"; do
  command -v "$bin" >/dev/null 2>&1 || { echo "need $bin on PATH" >&2; exit 1; }
done

port_busy () { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $LB_PORT $A_PORT $A_INTERNAL $B_PORT $B_INTERNAL $REDIS_PORT; do
  if port_busy "$p"; then echo "port $p on 127.0.0.1 is in use; stop what holds it first" >&2; exit 1; fi
done

if [ ! -f "$REPO/dist/src/main.js" ]; then
  echo "building (npm run build)"
  (cd "$REPO" && npm run build >/dev/null)
fi

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sse-gateway-local.XXXXXX")
chmod 755 "$RUN_DIR"
REDIS_PID='' A_PID='' B_PID='' LB_PID='' PROM_PID=''

stop_pid () { # pid, seconds to wait before SIGKILL
  local pid=$1 wait_s=$2 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < wait_s * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "pid $pid still running after ${wait_s}s: SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup () {
  local status=$?
  trap - EXIT INT TERM
  # Front to back: the load balancer, Prometheus, the replicas (they drain), Redis.
  stop_pid "$LB_PID" 5
  stop_pid "$PROM_PID" 5
  stop_pid "$A_PID" 20
  stop_pid "$B_PID" 20
  stop_pid "$REDIS_PID" 10
  wait 2>/dev/null || true
  # Logs are kept on a failure (Ctrl-C and SIGTERM are not failures).
  if [ "${KEEP_RUN_DIR:-0}" = 1 ] || { [ "$status" -ne 0 ] && [ "$status" -ne 130 ] && [ "$status" -ne 143 ]; }; then
    echo "logs kept in $RUN_DIR"
  else
    rm -rf "$RUN_DIR"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_http () { # url, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1 after $2 s" >&2
  return 1
}

# ---- Redis: AOF on so a restart keeps the streams, no RDB snapshots ---------
mkdir -p "$RUN_DIR/redis"
setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RUN_DIR/redis" \
  --save "" --appendonly yes --appendfsync everysec \
  --logfile "$RUN_DIR/redis.log" &
REDIS_PID=$!
for ((i = 0; i < 50; i++)); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null

# ---- two gateway replicas ------------------------------------------------------
JWT_SECRET=${JWT_SECRET:-$(node -e "process.stdout.write(require('crypto').randomBytes(32).toString('hex'))")}
printf '%s' "$JWT_SECRET" > "$RUN_DIR/jwt-secret"
export JWT_SECRET
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export HOST=127.0.0.1 INTERNAL_HOST=127.0.0.1
export PUBLIC_TOPICS=${PUBLIC_TOPICS:-demo}
# The load balancer connects from 127.0.0.2 (proxy_bind, source): only it may
# tell the client address; a client on 127.0.0.1 writing X-Forwarded-For is not believed.
export TRUST_PROXY=127.0.0.2
# Short enough for a quick demo of a drain; the defaults suit production.
export DRAIN_WINDOW_MS=${DRAIN_WINDOW_MS:-3000}
export RETRY_MS=${RETRY_MS:-500} RETRY_JITTER_MS=${RETRY_JITTER_MS:-500}
export LOG_LEVEL=${LOG_LEVEL:-info}

start_gateway () { # name, port, internal port
  PORT=$2 INTERNAL_PORT=$3 setsid node "$REPO/dist/src/main.js" >"$RUN_DIR/gateway-$1.log" 2>&1 &
}
start_gateway a $A_PORT $A_INTERNAL; A_PID=$!
start_gateway b $B_PORT $B_INTERNAL; B_PID=$!
wait_http "http://127.0.0.1:$A_INTERNAL/readyz" 15
wait_http "http://127.0.0.1:$B_INTERNAL/readyz" 15

# ---- the load balancer ------------------------------------------------------------
if [ "$LB" = nginx ]; then
  mkdir -p "$RUN_DIR/nginx/tmp"
  setsid nginx -p "$RUN_DIR/nginx/" -c "$HERE/nginx.conf" -e stderr 2>"$RUN_DIR/nginx.log" &
else
  setsid haproxy -db -f "$HERE/haproxy.cfg" >"$RUN_DIR/haproxy.log" 2>&1 &
fi
LB_PID=$!
# The load balancer answers 404 off /events: wait for any answer.
lb_up=0
for ((i = 0; i < 50; i++)); do
  kill -0 "$LB_PID" 2>/dev/null || break
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$LB_PORT/"; then lb_up=1; break; fi
  sleep 0.1
done
if [ "$lb_up" != 1 ]; then
  echo "$LB did not start:" >&2
  tail -n 5 "$RUN_DIR/$LB.log" >&2
  exit 1
fi

# ---- Prometheus, when installed ---------------------------------------------------
if command -v prometheus >/dev/null 2>&1 && [ "${PROMETHEUS:-1}" = 1 ] && ! port_busy $PROM_PORT; then
  setsid prometheus --config.file="$DEPLOY/prometheus/prometheus.yml" \
    --storage.tsdb.path="$RUN_DIR/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$RUN_DIR/prometheus.log" 2>&1 &
  PROM_PID=$!
fi

echo "running ($LB): redis pid $REDIS_PID, gateways pids $A_PID $B_PID, $LB pid $LB_PID${PROM_PID:+, prometheus pid $PROM_PID}"
echo "logs: $RUN_DIR"

prom_query () { curl -fsS -G --max-time 2 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" 2>/dev/null || true; }
prom_wait () { # what, seconds, command...
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs; i++)); do "$@" && { echo "prometheus: $what"; return 0; }; sleep 1; done
  echo "prometheus: timed out waiting for: $what" >&2
  return 1
}
both_up () { prom_query 'count(up{job="sse-gateway"} == 1)' | grep -q '"value":\[[^]]*,"2"\]'; }
a_down_alert () {
  curl -fsS --max-time 2 "http://127.0.0.1:$PROM_PORT/api/v1/alerts" 2>/dev/null \
    | grep -o '"labels":{[^}]*}' | grep '"alertname":"SSEGatewayReplicaDown"' | grep -q '"instance":"127.0.0.1:9091"'
}

if [ "$MODE" = smoke ]; then
  if [ -n "$PROM_PID" ]; then prom_wait "both replicas scraped" 30 both_up; fi
  export LB_URL="http://127.0.0.1:$LB_PORT"
  export A_INTERNAL_URL="http://127.0.0.1:$A_INTERNAL" B_INTERNAL_URL="http://127.0.0.1:$B_INTERNAL"
  export GATEWAY_A_PID=$A_PID
  if [ "$LB" = nginx ]; then lb_log="$RUN_DIR/nginx/access.log"; else lb_log="$RUN_DIR/haproxy.log"; fi
  export LOG_FILES="$lb_log:$RUN_DIR/gateway-a.log:$RUN_DIR/gateway-b.log"
  node "$HERE/smoke.mjs"
  # The smoke test sent replica a SIGTERM: it must have drained and exited 0.
  set +e
  wait "$A_PID"; a_status=$?
  set -e
  A_PID=''
  echo "replica a exit status: $a_status"
  [ "$a_status" -eq 0 ]
  if [ -n "$PROM_PID" ]; then
    # The scrape config and the alert rules, for real: replica a is gone.
    prom_wait "SSEGatewayReplicaDown raised for replica a" 30 a_down_alert
  fi
  exit 0
fi

cat <<EOF

Try it:
  curl -N "http://127.0.0.1:$LB_PORT/events?topic=demo"
  redis-cli -p $REDIS_PORT XADD sse:topic:demo MAXLEN '~' 10000 '*' event greeting data hello

With a token (user channel sse:user:alice plus topic demo):
  TOKEN=\$(JWT_SECRET=\$(cat $RUN_DIR/jwt-secret) node $REPO/dist/src/cli.js token --sub alice --topics demo)
  curl -N -H "Authorization: Bearer \$TOKEN" "http://127.0.0.1:$LB_PORT/events?topic=demo"

Drain one replica and watch the clients move:  kill -TERM $A_PID
Metrics: curl -s http://127.0.0.1:$A_INTERNAL/metrics | grep ^sse_gateway_connections_open
Ctrl-C stops everything.
EOF
# Runs until Ctrl-C, or until Redis or the load balancer exits (a replica may
# be stopped on purpose, to watch its clients move to the other one).
while kill -0 "$REDIS_PID" 2>/dev/null && kill -0 "$LB_PID" 2>/dev/null; do sleep 1; done
echo "redis-server or the load balancer exited; stopping the rest" >&2
exit 1
