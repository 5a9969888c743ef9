#!/usr/bin/env bash
# Profile one small-file case in sluice and nginx (issue 19): each server pinned
# on CPU 1 (one worker), `wrk -t1 -c32` pinned on CPU 0, `perf record -e
# cpu-clock` of the server only for SECONDS (5) during the run; prints each
# server's kernel/user split and its top 25 user-space symbols by self time (`perf report --no-children --sort
# dso,sym`).
#   CASE=304 (If-None-Match with the server's own ETag) | 4k (a 4 KiB GET)
#   CALLGRAPH="--call-graph dwarf" (default; "" for flat, much smaller files)
# Usage: SLUICE_BIN=target/release/sluice tests/bench/profile_small.sh > out.txt
# Needs: perf (kernel.perf_event_paranoid <= 1 or root), nginx, wrk, curl.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${SLUICE_BIN:-$here/../../target/release/sluice}
case_=${CASE:-304}
secs=${SECONDS_:-5}
cg=${CALLGRAPH-"--call-graph dwarf"}
tmp=$(mktemp -d /tmp/sluice-prof-XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/www" "$tmp/ng"
head -c 4096 /dev/urandom > "$tmp/www/4k.bin"
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
sp=$(port); np=$(port)
SLUICE_LOG=warn taskset -c 1 "$bin" serve "$tmp/www" --listen 127.0.0.1:$sp --workers 1 >"$tmp/sluice.log" 2>&1 &
pids+=($!); spid=$!
cat > "$tmp/ng/nginx.conf" <<NG
worker_processes 1; master_process off; daemon off; pid $tmp/ng/nginx.pid; error_log $tmp/ng/error.log warn;
events { worker_connections 1024; }
http { access_log off; default_type application/octet-stream; sendfile on; tcp_nopush on;
  client_body_temp_path $tmp/ng/b; proxy_temp_path $tmp/ng/p; fastcgi_temp_path $tmp/ng/f; uwsgi_temp_path $tmp/ng/u; scgi_temp_path $tmp/ng/s;
  open_file_cache max=1000 inactive=20s; open_file_cache_valid 30s; keepalive_requests 100000;
  server { listen 127.0.0.1:$np; root $tmp/www; } }
NG
taskset -c 1 nginx -c "$tmp/ng/nginx.conf" -p "$tmp/ng" &
pids+=($!); npid=$!
for p in $sp $np; do for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$p/4k.bin && break; sleep 0.1; done; done
for name in sluice nginx; do
  if [ $name = sluice ]; then p=$sp; pid=$spid; else p=$np; pid=$npid; fi
  url=http://127.0.0.1:$p/4k.bin
  hdr=()
  if [ "$case_" = 304 ]; then
    etag=$(curl -s -D - -o /dev/null "$url" | tr -d '\r' | awk 'tolower($1)=="etag:"{print $2}')
    hdr=(-H "If-None-Match: $etag")
  fi
  taskset -c 0 wrk -t1 -c32 -d1s "${hdr[@]}" "$url" >/dev/null  # warm-up
  taskset -c 0 wrk -t1 -c32 -d$((secs + 2))s "${hdr[@]}" "$url" > "$tmp/$name.wrk" &
  w=$!
  sleep 1
  perf record -q -e cpu-clock $cg -p "$pid" -o "$tmp/$name.data" -- sleep "$secs" 2>/dev/null
  wait $w
  echo "== $name, case $case_: $(grep -E 'Requests/sec' "$tmp/$name.wrk")"
  perf report -i "$tmp/$name.data" --no-children --sort dso,sym --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' > "$tmp/$name.rep"
  # cpu-clock samples at perf's default 4000 Hz: 250 µs of server CPU each;
  # requests in the window from wrk's rate (the window is inside wrk's run).
  samples=$(perf script -i "$tmp/$name.data" -F ip 2>/dev/null | wc -l)
  rps=$(awk '/Requests\/sec/{print $2}' "$tmp/$name.wrk")
  awk -v s="$samples" -v r="$rps" -v t="$secs" '/\[k\]/{k+=$1} !/\[k\]/{u+=$1}
    END{c=s*250/(r*t); printf "%s samples; server CPU %.1f µs/request: kernel %.1f%% (%.1f µs), user space %.1f%% (%.1f µs)\n", s, c, k, c*k/100, u, c*u/100}' "$tmp/$name.rep"
  echo "-- top 25 user-space symbols (% of all the server's samples)"
  grep -v '\[k\]' "$tmp/$name.rep" | head -25
  echo "-- top 12 kernel symbols"
  grep '\[k\]' "$tmp/$name.rep" | head -12
done
