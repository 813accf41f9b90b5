#!/usr/bin/env bash
# Runs bridge and its peers (uWSGI, Gunicorn, …) behind the same nginx in one
# run, using the shared peers harness (../shared/peers, see its README), so
# the numbers are ratios from one machine state. Results go to
# bench/results/<timestamp>/ (not committed); copy the table you quote into
# bench/RESULTS.md.
#
#   bench/run-peers.sh                                   # python and perl peers vs bridge, 2 processes each
#   ONLY='^nginx>uwsgi-py p2$' WORKLOADS=hello,big bench/run-peers.sh
#   PASSES=2 DURATION=10 bench/run-peers.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
bridge=$root/bin/bridge
[ -x "$bridge" ] || { echo "build first: make build" >&2; exit 1; }
[ -x "$peers/run.sh" ] || { echo "peers harness not found at $peers (set PEERS_DIR)" >&2; exit 1; }

only=${ONLY:-'^nginx>(uwsgi-py p2|gunicorn sync w2|uwsgi-psgi p2|starman w2|uwsgi-rack p2 gc100|puma w2t4)$'}
workloads=${WORKLOADS:-hello,hello_c1,big,echo}
out=$root/bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"

"$peers/run.sh" --only "$only|bridge" --workloads "$workloads" \
  --passes "${PASSES:-1}" --duration "${DURATION:-10}" --out "$out" \
  --add "nginx>bridge-py w2|nginx|uwsgi|python|all|$bridge serve --runner python:{module}:application --chdir {appdir} --uwsgi unix:{sock} --workers 2 --log-level warn" \
  --add "nginx>bridge-psgi w2|nginx|uwsgi|perl|all|$bridge serve --runner perl:{app} --chdir {appdir} --uwsgi unix:{sock} --workers 2 --log-level warn" \
  --add "nginx>bridge-rack w2|nginx|uwsgi|ruby|all|$bridge serve --runner ruby:{app} --chdir {appdir} --uwsgi unix:{sock} --workers 2 --log-level warn" \
  | tee "$out/table.txt"
echo "results: $out"
