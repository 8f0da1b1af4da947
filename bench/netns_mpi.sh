#!/usr/bin/env bash
# An MPI job over K "hosts" on this one machine: each host is a network namespace with its own
# hostname (UTS namespace) and address, joined by veth pairs to a bridge in a switch namespace;
# OpenMPI's launcher reaches a host through bench/netns_mpi.sh agent (instead of ssh), and ranks
# talk over TCP only (btl self,tcp; btl_tcp_if_include / oob_tcp_if_include = the namespaces'
# subnet). Every address lives in a namespace made here; nothing in the machine's own network
# namespace changes. Needs root, iproute2, util-linux (unshare), OpenMPI.
#
#   bench/netns_mpi.sh up K                  make K hosts pndmsets-h0 .. h(K-1) (10.231.0.10+i)
#   bench/netns_mpi.sh run K R -- CMD...     mpirun -n K*R, R ranks per host, CMD on every rank
#                                            (mpirun itself runs on host 0)
#   bench/netns_mpi.sh down                  remove every namespace made by `up`
set -euo pipefail
P=pndmsets
NET=10.231.0
HERE="$(cd "$(dirname "$0")" && pwd)"

case "${1:-}" in
up)
  K=$2
  ip netns add $P-sw
  ip -n $P-sw link set lo up
  ip -n $P-sw link add br0 type bridge
  ip -n $P-sw link set br0 up
  for h in $(seq 0 $((K - 1))); do
    ip netns add $P-h$h
    ip -n $P-sw link add v$h type veth peer name eth0 netns $P-h$h
    ip -n $P-sw link set v$h master br0 up
    ip -n $P-h$h addr add $NET.$((10 + h))/24 dev eth0
    ip -n $P-h$h link set eth0 up
    ip -n $P-h$h link set lo up
  done
  ;;
down)
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do ip netns del "$ns"; done
  ;;
agent)
  # OpenMPI plm_rsh_agent: "agent HOST COMMAND..." as ssh would run COMMAND on HOST
  host=$2
  shift 2
  h=$((${host##*.} - 10))
  exec ip netns exec $P-h$h unshare --uts sh -c "hostname $P-h$h; $*"
  ;;
run)
  K=$2 R=$3
  shift 3
  [ "$1" = "--" ] && shift
  hf=$(mktemp /tmp/$P-hosts.XXXXXX)
  for h in $(seq 0 $((K - 1))); do echo "$NET.$((10 + h)) slots=$R"; done > "$hf"
  args=(--allow-run-as-root --hostfile "$hf" -n $((K * R)) --map-by "ppr:$R:node" --bind-to none
        --mca plm_rsh_agent "$HERE/netns_mpi.sh agent" --mca plm_rsh_no_tree_spawn 1
        --mca btl self,tcp --mca btl_tcp_if_include $NET.0/24 --mca oob_tcp_if_include $NET.0/24)
  rc=0
  ip netns exec $P-h0 unshare --uts sh -c 'hostname '$P'-h0; exec "$@"' _ mpirun "${args[@]}" "$@" || rc=$?
  rm -f "$hf"
  exit $rc
  ;;
*)
  sed -n '2,14p' "$0"
  exit 2
  ;;
esac
