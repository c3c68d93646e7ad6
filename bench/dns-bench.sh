#!/usr/bin/env bash
# Benchmark: weir's DNS proxy vs dnsmasq, side by side in one run, with
# dnsperf. Both sit in front of the same upstream (a dnsmasq on 127.0.0.2
# answering the external names) and both know the same service names
# (weir from a registry snapshot, dnsmasq from --host-record). Caches are
# warmed first, so "external" measures cached forwarded answers and
# "service" measures locally answered cluster names. weir runs twice: UDP
# through Node's dgram in its JavaScript thread (--udp-threads 0), and UDP on
# THREADS native threads of the addon's fast path (default 2, as shipped),
# plus one native thread (the same thread count as dnsmasq).
#
#   [ROUNDS=3] [THREADS=2] bash bench/dns-bench.sh [seconds-per-run=5] [clients=8]
#
# Everything runs inside a private network namespace (loopback only) and is
# removed on exit. Writes bench/results/dns.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}"
CLIENTS="${2:-8}"
THREADS="${THREADS:-2}"
NS="wdb-$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
TMP="$(mktemp -d /tmp/wd-bench.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

N_EXT=200
N_SVC=200
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 127.0.0.2/8 dev lo 2>/dev/null || true

# Query files and the two configurations of the same names.
: >"$TMP/ext.txt"; : >"$TMP/svc.txt"; : >"$TMP/upstream.conf"; : >"$TMP/dnsmasq-svc.conf"
services='['
for i in $(seq 1 "$N_EXT"); do
  echo "ext$i.example A" >>"$TMP/ext.txt"
  echo "address=/ext$i.example/203.0.$((i / 250)).$((i % 250 + 1))" >>"$TMP/upstream.conf"
done
for i in $(seq 1 "$N_SVC"); do
  echo "svc$i.bench.svc.cluster.local A" >>"$TMP/svc.txt"
  ip="10.96.$((i / 250)).$((i % 250 + 1))"
  echo "host-record=svc$i.bench.svc.cluster.local,$ip" >>"$TMP/dnsmasq-svc.conf"
  [ "$i" -gt 1 ] && services+=','
  services+="{\"namespace\":\"bench\",\"name\":\"svc$i\",\"kind\":\"ClusterIP\",\"clusterIPs\":[\"$ip\"]}"
done
services+=']'
echo "{\"version\":1,\"clusterDomain\":\"cluster.local\",\"services\":$services}" >"$TMP/registry.json"

start() { ip netns exec "$NS" "$@" & PIDS+=("$!"); }

# The shared upstream (TTL 300 so answers are cacheable).
start dnsmasq --no-daemon --conf-file="$TMP/upstream.conf" --no-resolv --no-hosts --user=root --pid-file= \
  --bind-interfaces --listen-address=127.0.0.2 --port=53 --local-ttl=300
# dnsmasq under test: same upstream, same service names, a cache that holds them all.
start dnsmasq --no-daemon --conf-file="$TMP/dnsmasq-svc.conf" --no-resolv --no-hosts --user=root --pid-file= \
  --bind-interfaces --listen-address=127.0.0.1 --port=5353 --server=127.0.0.2 --cache-size=10000 --local-ttl=30
# weir's DNS proxy: UDP through Node in the JavaScript thread, and on native threads.
WEIR_LOG_LEVEL=warn start node --import tsx src/dns/standalone.ts --namespace bench --registry "$TMP/registry.json" \
  --upstream 127.0.0.2:53 --resolv-conf /nonexistent --port 15053 --no-v6 --udp-threads 0
WEIR_LOG_LEVEL=warn start node --import tsx src/dns/standalone.ts --namespace bench --registry "$TMP/registry.json" \
  --upstream 127.0.0.2:53 --resolv-conf /nonexistent --port 15054 --no-v6 --udp-threads "$THREADS"
WEIR_LOG_LEVEL=warn start node --import tsx src/dns/standalone.ts --namespace bench --registry "$TMP/registry.json" \
  --upstream 127.0.0.2:53 --resolv-conf /nonexistent --port 15055 --no-v6 --udp-threads 1

# The ceiling of a single Node.js UDP socket on this machine: an echo server
# that only flips the QR bit (no parsing, no lookup). weir cannot exceed it
# with one socket; it shows how much of the gap is Node's per-datagram cost.
start node -e '
const s = require("node:dgram").createSocket("udp4");
s.on("message", (m, r) => { m[2] |= 0x80; s.send(m, r.port, r.address); });
s.bind(15099, "127.0.0.1");'

for _ in $(seq 1 100); do
  if ip netns exec "$NS" dig +short +time=1 +tries=1 -p 15053 @127.0.0.1 svc1.bench.svc.cluster.local >/dev/null 2>&1 \
    && ip netns exec "$NS" dig +short +time=1 +tries=1 -p 15054 @127.0.0.1 svc1.bench.svc.cluster.local | grep -q 10.96 \
    && ip netns exec "$NS" dig +short +time=1 +tries=1 -p 15055 @127.0.0.1 svc1.bench.svc.cluster.local | grep -q 10.96 \
    && ip netns exec "$NS" dig +short +time=1 +tries=1 -p 5353 @127.0.0.1 ext1.example | grep -q 203; then break; fi
  sleep 0.2
done

run() { # server-port query-file seconds → dnsperf output
  ip netns exec "$NS" dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$3" -c "$CLIENTS" -q 200 -t 2 2>&1
}
# Warm both caches (every external name fetched once from the upstream).
run 15053 "$TMP/ext.txt" 1 >/dev/null
run 15054 "$TMP/ext.txt" 1 >/dev/null
run 15055 "$TMP/ext.txt" 1 >/dev/null
run 5353 "$TMP/ext.txt" 1 >/dev/null

# The machine is shared, so load from elsewhere comes and goes: alternate
# weir and dnsmasq in short rounds and report the median round of each.
ROUNDS="${ROUNDS:-3}"
declare -A QPS LAT LOST ALL RATIOS
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
TARGETS="weir weir1 weirN dnsmasq"
declare -A PORT=([weir]=15053 [weirN]=15054 [weir1]=15055 [dnsmasq]=5353)
# Started in this order above: upstream, dnsmasq, weir, weirN, weir1, echo.
declare -A PID=([dnsmasq]="${PIDS[1]}" [weir]="${PIDS[2]}" [weirN]="${PIDS[3]}" [weir1]="${PIDS[4]}")
declare -A CPU
HZ="$(getconf CLK_TCK)"
# CPU time (all threads) a server process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
user_ticks() { awk '{ print $14 }' "/proc/$1/stat"; }
# Machine-wide "idle total" ticks: was there spare CPU for more threads to use?
idle_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t }' /proc/stat; }
declare -A IDLE USER
for kind in ext svc; do
  for round in $(seq 1 "$ROUNDS"); do
    for target in $TARGETS; do
      port="${PORT[$target]}"
      before="$(cpu_ticks "${PID[$target]}")"; ubefore="$(user_ticks "${PID[$target]}")"; idle0="$(idle_ticks)"
      out="$(run "$port" "$TMP/$kind.txt" "$SECS")"
      after="$(cpu_ticks "${PID[$target]}")"; uafter="$(user_ticks "${PID[$target]}")"; idle1="$(idle_ticks)"
      user="$(awk -v u=$((uafter - ubefore)) -v t=$((after - before)) 'BEGIN { if (t > 0) printf "%.0f", 100 * u / t; else print "n/a" }')"
      USER[$target-$kind]+="$user "
      idle="$(awk -v a="$idle0" -v b="$idle1" 'BEGIN { split(a, x, " "); split(b, y, " "); if (y[2] > x[2]) printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]); else print "n/a" }')"
      IDLE[$target-$kind]+="$idle "
      q="$(awk '/Queries per second:/ {print $4}' <<<"$out")"
      # Server CPU microseconds per answered query: what the answers cost, whatever else ran.
      cpu="$(awk -v t=$((after - before)) -v hz="$HZ" -v q="$q" -v s="$SECS" 'BEGIN { if (q > 0) printf "%.1f", t / hz * 1e6 / (q * s); else print "n/a" }')"
      CPU[$target-$kind]+="$cpu "
      l="$(awk '/Average Latency \(s\):/ {printf "%.3f", $4 * 1000}' <<<"$out")"
      lost="$(awk '/Queries lost:/ {print $3}' <<<"$out")"
      QPS[$target-$kind]+="$q "; LAT[$target-$kind]+="$l "; LOST[$target-$kind]+="$lost "
      ALL[$target-$kind]+="${q%.*} "
      echo "round $round $target $kind: $q qps, avg $l ms, lost $lost, $cpu µs CPU/query ($user % user), machine idle $idle %" >&2
    done
    # The round ran back to back, under the same outside load: its ratios
    # are the fairest single numbers.
    for w in weir weir1 weirN; do
      RATIOS[$w-$kind]+="$(ratio "$(awk '{print $NF}' <<<"${QPS[$w-$kind]}")" "$(awk '{print $NF}' <<<"${QPS[dnsmasq-$kind]}")") "
    done
  done
  for target in $TARGETS; do
    QPS[$target-$kind]="$(median <<<"${QPS[$target-$kind]}")"
    LAT[$target-$kind]="$(median <<<"${LAT[$target-$kind]}")"
    CPU[$target-$kind]="$(median <<<"${CPU[$target-$kind]}")"
    IDLE[$target-$kind]="$(median <<<"${IDLE[$target-$kind]}")"
    USER[$target-$kind]="$(median <<<"${USER[$target-$kind]}")"
    LOST[$target-$kind]="$(tr ' ' '\n' | awk '{ s += $1 } END { print s }' <<<"${LOST[$target-$kind]}")"
  done
done

echo_out="$(run 15099 "$TMP/ext.txt" "$SECS")"
ECHO_QPS="$(awk '/Queries per second:/ {print $4}' <<<"$echo_out")"
echo "node echo ceiling: $ECHO_QPS qps" >&2

mkdir -p bench/results
{
  echo "# DNS proxy: weir vs dnsmasq (dnsperf)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) vCPU ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r); shared with other workloads"
  echo "- dnsperf $(dpkg-query -W -f='${Version}' dnsperf 2>/dev/null), dnsmasq $(dnsmasq --version | awk 'NR==1 {print $3}'), node $(node --version)"
  echo "- ${ROUNDS} alternating rounds per workload, each ${SECS} s per server, ${CLIENTS} clients, up to 200 outstanding queries, UDP over loopback in a private netns; medians reported, every round listed below"
  echo "- external: ${N_EXT} names, answered from each server's cache (warmed first) after forwarding to the same upstream dnsmasq"
  echo "- service: ${N_SVC} cluster FQDNs, weir from its registry, dnsmasq from --host-record"
  echo
  echo "weir (node) = UDP through Node's dgram in the JavaScript thread (--udp-threads 0); weir (native $THREADS) = UDP on $THREADS native threads of the fast path (recvmmsg/sendmmsg, repeated questions answered without JavaScript; the default); weir (native 1) = the same with one thread."
  echo
  echo "| workload | server | qps (median) | / dnsmasq (median of per-round ratios) | per-round ratios | avg latency (median) | server CPU per query, user share (median) | machine idle during run (median) | lost, all rounds |"
  echo "|---|---|---:|---:|---|---:|---:|---:|---:|"
  for kind in ext svc; do
    label="cached external names"; [ "$kind" = svc ] && label="service names"
    for target in $TARGETS; do
      name="weir (node)"; [ "$target" = weirN ] && name="weir (native $THREADS)"; [ "$target" = weir1 ] && name="weir (native 1)"; [ "$target" = dnsmasq ] && name="dnsmasq"
      if [ "$target" = dnsmasq ]; then r="1.00×"; rr=""; else r="$(median <<<"${RATIOS[$target-$kind]}")×"; rr="${RATIOS[$target-$kind]% }"; fi
      echo "| $label | $name | ${QPS[$target-$kind]%.*} | $r | $rr | ${LAT[$target-$kind]} ms | ${CPU[$target-$kind]} µs (${USER[$target-$kind]} % user) | ${IDLE[$target-$kind]} % | ${LOST[$target-$kind]} |"
    done
  done
  echo
  echo "Every round (qps):"
  for kind in ext svc; do
    for target in $TARGETS; do echo "- $target $kind: ${ALL[$target-$kind]}"; done
  done
  echo
  echo "Single-socket Node.js ceiling on this machine (UDP echo that only flips the QR bit, same dnsperf settings): ${ECHO_QPS%.*} qps = $(ratio "$ECHO_QPS" "${QPS[dnsmasq-ext]}")× dnsmasq (external median)."
  cat <<'NOTES'

## Reading the numbers

- The machine has 2 vCPUs for dnsperf, the server under test and everything
  else, and may be shared: the "machine idle" column is the whole machine's
  idle share while that server was measured. Read the per-round ratios
  (each round ran back to back) and the CPU cost per query, which does not
  depend on how much CPU the server was given.
- dnsperf keeps up to 200 queries outstanding, so "avg latency" is mostly
  queueing at saturation, not the per-query service time.
- Server CPU per query = the server process's CPU time (all threads, user +
  system, from /proc/PID/stat) over the queries it answered. With the
  machine at ~0 % idle, qps ≈ (CPU the server got) / (CPU per query): the
  per-query cost decides the ratio.
- weir (node) pays Node's per-datagram machinery (libuv poll, a Buffer and
  an rinfo object per message, a sendto per answer, JS↔C++ crossings): its
  user time per query is several times dnsmasq's, and it cannot exceed the
  single-socket Node.js ceiling line (a UDP echo that does no DNS work at
  all). A CPU profile of that path put ~3 % of the time in weir's own
  functions, so no JavaScript change could close the gap.
- The native fast path (native/src/dns_fast.cc, the default when the addon
  is built) reads and writes up to 32 datagrams per system call and answers
  a repeated question from a table the JavaScript server fills (local
  answers; cacheable upstream answers for their remaining lifetime, TTLs
  aged), patching ID, RD and the client's letter case. Only first queries,
  forwarding and odd packets cross into JavaScript. Its user time per query
  is a fraction of dnsmasq's; what remains is the kernel's share (on
  loopback the sender also runs the receiver's softirq).
- weir (native 1) uses one thread, like dnsmasq: the comparison at equal
  thread count.
NOTES
} >bench/results/dns.md
cat bench/results/dns.md
