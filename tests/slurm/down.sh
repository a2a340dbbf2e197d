#!/usr/bin/env bash
# Stop the test cluster started by tests/slurm/up.sh: slurmd, slurmctld, then munged, each by its pid file.
set -uo pipefail
STATE=${CNNPIPE_SLURM_STATE:-/var/lib/cnnpipe-slurm}

stop() {  # stop <pidfile> <name>: SIGTERM, wait up to 10 s, then SIGKILL
  local pidfile=$1 name=$2 pid
  [ -f "$pidfile" ] || { echo "down.sh: $name not running (no $pidfile)"; return 0; }
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "down.sh: stopped $name ($pid)"
  fi
  rm -f "$pidfile"
}

stop "$STATE/slurmd.pid" slurmd
stop "$STATE/slurmctld.pid" slurmctld
[ "${1:-}" = --keep-munge ] || stop /run/munge/munged.pid munged
