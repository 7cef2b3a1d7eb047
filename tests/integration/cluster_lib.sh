# A local Redis Cluster for integration tests (sourced after lib.sh).
# mp_cluster_start builds it on 127.0.0.1, every node in its own dir
# under $MP_TMP, its PID in MP_PIDS (so lib.sh's exit trap stops it) and
# in MP_CLUSTER_PIDS, indexed alongside MP_CLUSTER_PORTS. Then
# mp_cluster_primary_of, mp_cluster_kill and mp_cluster_wait_failover
# find the primary of a key, SIGKILL it and wait for its replica to take
# over. Failover is quick: node timeout 1 s, replicas always eligible.
# A function that prints its answer fails with status 1 (its mp_fail
# inside $(...) ends only the subshell): p=$(mp_cluster_primary_of k) ||
# mp_fail "...". mp_cluster_start and mp_cluster_kill set variables, so
# call them directly, never in $(...).

MP_CLUSTER_PORTS=()
MP_CLUSTER_PIDS=()
MP_CLUSTER_BUS=()		# cluster bus ports (not port + 10000: see below)
declare -A MP_CLUSTER_DEAD_SLOTS	# port -> "a-b c-d" it served when killed
MP_CLUSTER_NODE_TIMEOUT=${MP_CLUSTER_NODE_TIMEOUT:-1000}	# ms

# mp_cluster_free_port: mp_free_port, but none given to this cluster yet.
mp_cluster_free_port() {
	local p q
	for _ in $(seq 20); do
		p=$(mp_free_port)
		for q in "${MP_CLUSTER_PORTS[@]}" "${MP_CLUSTER_BUS[@]}"; do
			[ "$p" = "$q" ] && { p=; break; }
		done
		[ -n "$p" ] && { echo "$p"; return 0; }
	done
	return 1
}

# mp_cluster_live_port: the port of a node whose process is alive, the
# seed first (prints nothing, returns 1, when none is).
mp_cluster_live_port() {
	local i
	for i in "${!MP_CLUSTER_PORTS[@]}"; do
		mp_alive "${MP_CLUSTER_PIDS[$i]}" && { echo "${MP_CLUSTER_PORTS[$i]}"; return 0; }
	done
	return 1
}

# mp_cluster_cli ARGS...: redis-cli -c (follows MOVED/ASK) on a live node.
mp_cluster_cli() {
	local p
	p=$(mp_cluster_live_port) || return 1
	redis-cli -c -p "$p" "$@"
}

# mp_cluster_ok PORT...: each node says cluster_state:ok with every slot
# assigned and knows every node of the cluster.
mp_cluster_ok() {
	local p info
	for p in "$@"; do
		info=$(redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r') || return 1
		grep -qx 'cluster_state:ok' <<<"$info" || return 1
		grep -qx 'cluster_slots_assigned:16384' <<<"$info" || return 1
		grep -qx "cluster_known_nodes:${#MP_CLUSTER_PORTS[@]}" <<<"$info" || return 1
	done
}

# mp_cluster_replicas_synced: every replica's link to its primary is up.
mp_cluster_replicas_synced() {
	local p repl
	for p in "${MP_CLUSTER_PORTS[@]}"; do
		repl=$(redis-cli -p "$p" info replication 2>/dev/null | tr -d '\r') || return 1
		grep -qx 'role:slave' <<<"$repl" || continue
		grep -qx 'master_link_status:up' <<<"$repl" || return 1
	done
}

# mp_cluster_start NPRIMARIES REPLICAS_PER_PRIMARY: start the nodes,
# create the cluster and wait (30 s at most) until every node has every
# slot assigned, cluster_state:ok and (replicas) its link up. Sets
# MP_CLUSTER_SEED (the first node's port) and MP_CLUSTER_URL. Fails the
# test when the cluster does not form; skips it (77) without redis.
mp_cluster_start() {
	local np=$1 nr=$2 n i port bus dir addrs=()
	mp_need redis-server redis-cli
	# redis-cli --cluster create refuses fewer than 3 primaries
	[ "$np" -ge 3 ] || mp_fail "mp_cluster_start: a cluster needs 3 primaries or more"
	n=$((np * (1 + nr)))
	for i in $(seq 0 $((n - 1))); do
		port=$(mp_cluster_free_port) || mp_fail "no free port"
		MP_CLUSTER_PORTS+=("$port")
		# the default bus port, port + 10000, is beyond 65535 for much
		# of the ephemeral range mp_free_port draws from
		bus=$(mp_cluster_free_port) || mp_fail "no free port"
		MP_CLUSTER_BUS+=("$bus")
		dir=$MP_TMP/cluster-$port
		mkdir -p "$dir"
		redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
			--cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
			--cluster-port "$bus" --cluster-node-timeout "$MP_CLUSTER_NODE_TIMEOUT" \
			--cluster-replica-validity-factor 0 \
			--save '' --appendonly no >"$MP_TMP/cluster-$port.log" 2>&1 &
		MP_PIDS+=($!)
		MP_CLUSTER_PIDS+=($!)
		addrs+=("127.0.0.1:$port")
	done
	for port in "${MP_CLUSTER_PORTS[@]}"; do
		mp_wait_for 10 redis-cli -p "$port" ping || mp_fail "cluster node $port did not start"
	done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$nr" --cluster-yes \
		>"$MP_TMP/cluster-create.out" 2>&1 ||
		mp_fail "redis-cli --cluster create: $(tail -5 "$MP_TMP/cluster-create.out")"
	mp_wait_for 30 mp_cluster_ok "${MP_CLUSTER_PORTS[@]}" ||
		mp_fail "cluster not ok after 30 s: $(redis-cli -p "${MP_CLUSTER_PORTS[0]}" cluster nodes)"
	mp_wait_for 30 mp_cluster_replicas_synced ||
		mp_fail "cluster replicas not in sync after 30 s: $(redis-cli -p "${MP_CLUSTER_PORTS[0]}" cluster nodes)"
	MP_CLUSTER_SEED=${MP_CLUSTER_PORTS[0]}
	MP_CLUSTER_URL=redis://127.0.0.1:$MP_CLUSTER_SEED
	export MP_CLUSTER_SEED MP_CLUSTER_URL
}

# mp_cluster_nodes [PORT]: CLUSTER NODES of PORT (default a live node).
mp_cluster_nodes() {
	local p=${1:-}
	[ -n "$p" ] || p=$(mp_cluster_live_port) || return 1
	redis-cli -p "$p" cluster nodes | tr -d '\r'
}

# mp_cluster_owner_of_slot SLOT [PORT]: the port of the primary that
# serves SLOT in PORT's view (default a live node); 1 if none does.
mp_cluster_owner_of_slot() {
	mp_cluster_nodes "${2:-}" | awk -v s="$1" '
	$3 ~ /master/ && $3 !~ /fail/ {
		for (i = 9; i <= NF; i++) {
			if ($i ~ /^\[/) continue	# a slot being imported or migrated
			n = split($i, r, "-")
			if (n == 1) r[2] = r[1]
			if (s + 0 >= r[1] + 0 && s + 0 <= r[2] + 0) {
				split($2, a, "[:@]")
				print a[2]
				found = 1
				exit
			}
		}
	}
	END { exit !found }'
}

# mp_cluster_primary_of KEY: the port of the primary serving KEY's slot.
mp_cluster_primary_of() {
	local p slot
	p=$(mp_cluster_live_port) || return 1
	slot=$(redis-cli -p "$p" cluster keyslot "$1") || return 1
	[[ $slot =~ ^[0-9]+$ ]] || return 1
	mp_cluster_owner_of_slot "$slot" "$p"
}

# mp_cluster_index PORT: the index of PORT in MP_CLUSTER_PORTS.
mp_cluster_index() {
	local i
	for i in "${!MP_CLUSTER_PORTS[@]}"; do
		[ "${MP_CLUSTER_PORTS[$i]}" = "$1" ] && { echo "$i"; return 0; }
	done
	return 1
}

# mp_cluster_kill PORT: SIGKILL the node on PORT (by the PID we started
# it with) and reap it. The slots it serves are noted first, for
# mp_cluster_wait_failover.
mp_cluster_kill() {
	local port=$1 i pid
	i=$(mp_cluster_index "$port") || mp_fail "mp_cluster_kill: $port is no node of ours"
	pid=${MP_CLUSTER_PIDS[$i]}
	mp_alive "$pid" || mp_fail "mp_cluster_kill: node $port (pid $pid) is not running"
	MP_CLUSTER_DEAD_SLOTS[$port]=$(redis-cli -p "$port" cluster nodes | tr -d '\r' |
		awk '$3 ~ /myself/ { for (i = 9; i <= NF; i++) if ($i !~ /^\[/) printf "%s ", $i }')
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
	for _ in $(seq 50); do
		mp_alive "$pid" || return 0
		sleep 0.1
	done
	mp_fail "node $port (pid $pid) still alive after SIGKILL"
}

# mp_cluster_failed_over PORT: every surviving node has cluster_state:ok
# and agrees on one primary, not PORT, for every slot range PORT served;
# prints that primary's port.
mp_cluster_failed_over() {
	local dead=$1 i p r owner prev=
	for i in "${!MP_CLUSTER_PORTS[@]}"; do
		p=${MP_CLUSTER_PORTS[$i]}
		mp_alive "${MP_CLUSTER_PIDS[$i]}" || continue
		redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok' || return 1
		for r in ${MP_CLUSTER_DEAD_SLOTS[$dead]}; do
			owner=$(mp_cluster_owner_of_slot "${r%-*}" "$p") || return 1
			[ "$owner" != "$dead" ] || return 1
			[ -z "$prev" ] || [ "$owner" = "$prev" ] || return 1
			prev=$owner
			owner=$(mp_cluster_owner_of_slot "${r#*-}" "$p") || return 1
			[ "$owner" = "$prev" ] || return 1
		done
	done
	[ -n "$prev" ] || return 1
	# the new primary says so itself
	redis-cli -p "$prev" role 2>/dev/null | head -1 | grep -qx master || return 1
	echo "$prev"
}

# mp_cluster_wait_failover PORT TIMEOUT_S: wait until a replica of the
# dead PORT serves its slots and the surviving nodes are ok; print the
# new primary's port. Fails the test after TIMEOUT_S seconds.
mp_cluster_wait_failover() {
	local dead=$1 t=$2 np
	if [ -z "${MP_CLUSTER_DEAD_SLOTS[$dead]:-}" ]; then
		# not killed through mp_cluster_kill: its slots as the others see them
		MP_CLUSTER_DEAD_SLOTS[$dead]=$(mp_cluster_nodes | awk -v p=":$dead@" '
			index($2, p) && $3 ~ /master/ { for (i = 9; i <= NF; i++) if ($i !~ /^\[/) printf "%s ", $i }')
	fi
	[ -n "${MP_CLUSTER_DEAD_SLOTS[$dead]}" ] || mp_fail "mp_cluster_wait_failover: node $dead served no slots"
	for _ in $(seq $((t * 10))); do
		np=$(mp_cluster_failed_over "$dead" 2>/dev/null) && { echo "$np"; return 0; }
		sleep 0.1
	done
	mp_fail "no failover of node $dead within ${t}s: $(mp_cluster_nodes)"
}
