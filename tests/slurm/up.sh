#!/usr/bin/env bash
# Start a single-node SLURM 22.05 cluster on this machine (munge + slurmctld + slurmd), for tests and CI.
#
# Needs root and Debian's packages: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
# Recipe from /work/shared/ENVIRONMENT-NOTES.md: no systemd, no cgroups, no accounting; every address is
# 127.0.0.1, so name resolution is never needed.
# Usage: tests/slurm/up.sh [cpu|gpu] [timeout_seconds]   (defaults: cpu, 60; exits 1 with the daemon logs on timeout)
#   cpu: the node advertises no generic resources at all (GresTypes unset), like most clusters' default
#        partition: a job that asks for --gres=gpu:1 is refused ("Invalid generic resource (gres) specification").
#   gpu: the node advertises $CNNPIPE_SLURM_GPUS (default 1) GPUs as gres "gpu", backed by empty device files:
#        jobs asking for --gres=gpu:1 are scheduled and allocated one (scontrol -d show job: JOB_GRES=gpu:1)
#        exactly as on a GPU cluster; nothing is bound, so CUDA code falls back to the CPU.
# Idempotent: if the node is already idle in the same mode, it returns at once; in the other mode the daemons
# are restarted with the new config. Stop it with tests/slurm/down.sh. State, logs and pid files live in
# $CNNPIPE_SLURM_STATE.
set -euo pipefail

MODE=${1:-cpu}
TIMEOUT=${2:-60}
STATE=${CNNPIPE_SLURM_STATE:-/var/lib/cnnpipe-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by cnnpipe tests/slurm/up.sh"
PARTITION=${CNNPIPE_SLURM_PARTITION:-debug}
case "$MODE" in
  cpu) GPUS=0 ;;
  gpu) GPUS=${CNNPIPE_SLURM_GPUS:-1} ;;
  *) echo "usage: tests/slurm/up.sh [cpu|gpu] [timeout_seconds] (got mode '$MODE')" >&2; exit 2 ;;
esac
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || { echo "up.sh: timeout must be whole seconds, got '$TIMEOUT'" >&2; exit 2; }

die() { echo "up.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (it starts munged and the SLURM daemons)"
for tool in mungekey munged munge unmunge slurmd slurmctld sinfo sbatch; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y slurmctld slurmd slurm-client munge"
done

node_state() { timeout 5 sinfo -h -o %T 2>/dev/null | head -n1 || true; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start=$(date +%s)
if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && grep -qxF "$MARK; mode $MODE" "$CONF" 2>/dev/null
then
  s=$(node_state)
  case "$s" in idle|mixed|allocated) echo "up.sh: SLURM already up ($s, mode $MODE)"; exit 0 ;; esac
fi
mkdir -p "$STATE"/{ctld,d,log}

# --- munge: key once, /run/munge owned by munge, daemon as the munge user ---
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /etc/munge
[ -s /etc/munge/munge.key ] || mungekey -c -k /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0600 /etc/munge/munge.key
if ! alive /run/munge/munged.pid; then
  su -s /bin/sh munge -c '/usr/sbin/munged --force'
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"

# --- slurm.conf: one node as `slurmd -C` sees it, one default partition ---
for f in "$CONF" /etc/slurm/gres.conf; do
  if [ -f "$f" ] && ! grep -qF "$MARK" "$f"; then
    die "$f exists and was not written by this script; refusing to overwrite a real cluster's config"
  fi
done
HOST=$(hostname -s)
NODE=$(slurmd -C | head -n1)                      # NodeName=<host> CPUs=.. ... RealMemory=..
NODE_NAME=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$NODE")
GRES_NODE=""; GRES_TYPES=""
if [ "$GPUS" -gt 0 ]; then
  GRES_NODE="Gres=gpu:$GPUS"; GRES_TYPES="GresTypes=gpu"
  for i in $(seq 0 $((GPUS - 1))); do : >"$STATE/fake-gpu$i"; done     # slurmd counts gpus by their files
  printf '%s\nNodeName=%s Name=gpu File=%s/fake-gpu[0-%s]\n' "$MARK" "$NODE_NAME" "$STATE" $((GPUS - 1)) \
    >/etc/slurm/gres.conf
else
  rm -f /etc/slurm/gres.conf
fi
cat >"$CONF" <<EOF
$MARK; mode $MODE
# do not edit (rewritten on every start)
ClusterName=cnnpipe-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
# finished jobs stay visible to scontrol for the test's checks, even when a busy machine makes a run slow
MinJobAge=3600
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
$GRES_TYPES
$NODE $GRES_NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP
EOF
sed -i 's/ UpTime=[^ ]*//' "$CONF"               # slurmd -C may append UpTime on the node line

# --- daemons (-c: start clean, no saved state from an earlier run) ---
# Daemons that run but whose node is not usable (old config, invalid state): restart them with this config.
"$(dirname "$0")/down.sh" --keep-munge >/dev/null
slurmctld -c
slurmd -c

while :; do
  s=$(node_state)
  case "$s" in idle|mixed|allocated) break ;; esac
  if [ $(( $(date +%s) - start )) -ge "$TIMEOUT" ]; then
    echo "up.sh: node not idle after ${TIMEOUT}s (state: '${s:-none}'); daemon logs:" >&2
    tail -n 20 "$STATE"/log/*.log >&2 || true
    exit 1
  fi
  # a node that came back "down" from an earlier run is resumed (ReturnToService=2 usually does it)
  case "$s" in down*|drain*) scontrol update NodeName="$NODE_NAME" State=RESUME 2>/dev/null || true ;; esac
  sleep 0.5
done
echo "up.sh: SLURM up in $(( $(date +%s) - start ))s: node $NODE_NAME, partition $PARTITION, mode $MODE ($GPUS GPUs)"
