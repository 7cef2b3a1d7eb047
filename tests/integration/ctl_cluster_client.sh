#!/usr/bin/env bash
# ctl_redis on a real local Redis Cluster: 3 primaries with a replica
# each (cluster_lib.sh), then test_ctl_cluster_client, which is given
# every node as port:pid so it can kill the namespace's primary itself.
# usage: ctl_cluster_client.sh TEST_CTL_CLUSTER_CLIENT
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"
TEST=$1
mp_need redis-server
mp_need redis-cli
mp_cluster_start 3 1
nodes=
for i in "${!MP_CLUSTER_PORTS[@]}"; do
	nodes+="${MP_CLUSTER_PORTS[$i]}:${MP_CLUSTER_PIDS[$i]} "
done
MP_CLUSTER_NODES=$nodes "$TEST" || mp_fail "test_ctl_cluster_client failed"
