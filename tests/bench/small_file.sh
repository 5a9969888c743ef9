#!/usr/bin/env bash
# Small-file baseline: requests/s for one 4 KiB file, sluice vs nginx, per
# ../shared/BENCH-METHOD.md (servers pinned on CPU 1 with one worker each, wrk on
# CPU 0, interleaved rounds, access logs off). Needs nginx and wrk (Debian
# packages) and a release build (`cargo build --release -p sluice`).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-5}
dir=$(mktemp -d)
trap 'kill $(cat "$dir/nginx.pid" 2>/dev/null) $sluice 2>/dev/null || true; rm -rf "$dir"' EXIT
head -c 4096 /dev/urandom > "$dir/4k.bin"
cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon on;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:18191; root $dir; }
}
CONF
taskset -c 1 nginx -c "$dir/nginx.conf" -p "$dir"
taskset -c 1 target/release/sluice serve "$dir" --listen 127.0.0.1:18190 --workers 1 >/dev/null 2>&1 &
sluice=$!
sleep 1
cat "$dir/4k.bin" > /dev/null
for port in 18190 18191; do curl -s -o /dev/null "http://127.0.0.1:$port/4k.bin"; done
declare -A results
for ((r = 0; r < rounds; r++)); do
  order=(18190 18191); ((r % 2)) && order=(18191 18190)
  for port in "${order[@]}"; do
    rps=$(taskset -c 0 wrk -t1 -c32 -d4s "http://127.0.0.1:$port/4k.bin" | awk '/Requests\/sec/ {print $2}')
    results[$port]+="$rps "
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
s=$(echo "${results[18190]}" | median); n=$(echo "${results[18191]}" | median)
echo "| server | 4 KiB req/s, median of $rounds [all] |"
echo "|---|---|"
echo "| sluice (default policy, 1 worker) | $s [${results[18190]% }] |"
echo "| nginx 1 worker, sendfile on | $n [${results[18191]% }] |"
echo "sluice / nginx: $(python3 -c "print(f'{$s/$n:.2f}')")"
