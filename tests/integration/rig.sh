# The DPDK rig on one machine (sourced by lib.sh): a veth pair with
# offloads off, driven by net_af_xdp, or by net_af_packet where AF_XDP
# cannot attach. Needs ethtool, dpdk-testpmd (package dpdk, for the
# probe), librte-net-af-xdp23 and libxdp1 (scripts/install-deps).
#
#   mp_rig_veth NS DPIF PEERIF [DPNS [QUEUES]]
#       a veth pair (QUEUES rx/tx queues each end, default 1: one per
#       worker; a one-worker port must not have more, since the peer
#       spreads flows over them): PEERIF in netns NS (the kernel side: give it the
#       address), DPIF in DPNS (default NS; DPDK attaches to it, it gets no
#       address and never forwards). Both up, offloads off on both. Then
#       probes AF_XDP on DPIF and prints one line to stderr saying which
#       PMD the rig uses and why: MP_RIG_PMD (net_af_xdp|net_af_packet),
#       MP_RIG_WHY. Both ends go away with the namespaces on exit (and are
#       deleted explicitly, in case DPNS outlives the run).
#   mp_rig_vdev NAME
#       prints the --vdev argument for the last pair: <pmd>_NAME,iface=DPIF
#   $MP_RIG_EXEC CMD...
#       run a DPDK program with what AF_XDP wants: LIBXDP_OBJECT_PATH and,
#       inside a private mount namespace (ip netns exec makes one), a
#       bpffs on /sys/fs/bpf so libxdp can use its dispatcher (where the
#       kernel lets it: not on this machine, see README). Use it after
#       ip netns exec, timeout, taskset: `ip netns exec NS $MP_RIG_EXEC prog`.
#
# MP_RIG=af_packet forces the fallback; MP_RIG=af_xdp fails the run
# instead of falling back.

MP_RIG_EXEC=$MP_LIB_DIR/rig_exec.sh
MP_LINKS=()	# "NS:IF" veth ends to delete on exit (mp_cleanup)
: "${LIBXDP_OBJECT_PATH:=/usr/lib/x86_64-linux-gnu/bpf}"
export LIBXDP_OBJECT_PATH

# mp_rig_probe NS IF QUEUES: 0 when net_af_xdp starts a port on IF in NS
# (a short dpdk-testpmd run, under a second); else 1 with MP_RIG_WHY set.
mp_rig_probe() {
	local ns=$1 ifc=$2 q=$3 log rc prefix=mprp$MP_SUFFIX$2
	log=$MP_TMP/rig-probe-$ifc.log
	if ! command -v dpdk-testpmd >/dev/null; then
		MP_RIG_WHY="dpdk-testpmd not installed, cannot probe AF_XDP"
		return 1
	fi
	if ! ls /usr/lib/*/dpdk/pmds-*/librte_net_af_xdp.so* >/dev/null 2>&1; then
		MP_RIG_WHY="the net_af_xdp PMD is not installed (librte-net-af-xdp23)"
		return 1
	fi
	# Two lcores on one CPU (testpmd wants a forwarding core); stdin at EOF
	# makes it stop and close the port, which detaches the XDP program.
	# --no-shconf, and the runtime directory removed after: nothing left
	# under /var/run/dpdk (--in-memory does not go with --no-huge).
	ip netns exec "$ns" timeout -k 2 20 "$MP_RIG_EXEC" dpdk-testpmd --no-pci --no-huge -m 128 --no-shconf \
		--lcores 0@0,1@0 --file-prefix "$prefix" \
		--vdev "net_af_xdp_p$MP_SUFFIX,iface=$ifc,queue_count=$q" -- --total-num-mbufs 4096 \
		--rxq="$q" --txq="$q" --forward-mode=rxonly </dev/null >"$log" 2>&1
	rc=$?
	rm -rf "/var/run/dpdk/$prefix"
	# libxdp may say it fell back to one program without its dispatcher
	# (freplace not allowed here): AF_XDP works all the same.
	if [ $rc -eq 0 ] && grep -q "^Port 0: " "$log" && grep -q "Press enter to exit" "$log" &&
		! grep -qE "Fail to|Failed to|Cause:" "$log"; then
		MP_RIG_NOTE=
		grep -q "without dispatcher" "$log" && MP_RIG_NOTE=" (libxdp: one program, no dispatcher)"
		return 0
	fi
	MP_RIG_WHY="AF_XDP did not attach to $ifc, $q queue(s) (dpdk-testpmd exit $rc: $(
		grep -E '^[a-z_]+\(\): ' "$log" | grep -vE 'Initializing|Removing|Closing|Zero copy' |
		head -1))"
	return 1
}

mp_rig_veth() {
	local ns=$1 dpif=$2 peerif=$3 dpns=${4:-$1} q=${5:-1} i ns_i
	ip link add "$dpif" netns "$dpns" numtxqueues "$q" numrxqueues "$q" type veth \
		peer name "$peerif" netns "$ns" numtxqueues "$q" numrxqueues "$q" ||
		mp_fail "cannot create veth $dpif/$peerif"
	MP_LINKS+=("$ns:$peerif")
	ip -n "$dpns" link set "$dpif" up
	ip -n "$ns" link set "$peerif" up
	# The kernel sees what arrives on DPIF too (af_packet copies, it does
	# not steal): it must neither forward nor answer it.
	ip netns exec "$dpns" sysctl -qw "net.ipv4.conf.$dpif.forwarding=0" \
		"net.ipv6.conf.$dpif.disable_ipv6=1" 2>/dev/null
	for i in "$dpns:$dpif" "$ns:$peerif"; do
		ns_i=${i%%:*}
		ip netns exec "$ns_i" ethtool -K "${i#*:}" tx off rx off tso off gso off gro off \
			>/dev/null 2>&1 || echo "rig: warning: ethtool -K ${i#*:} failed" >&2
	done
	MP_RIG_DPIF=$dpif MP_RIG_QUEUES=$q
	case ${MP_RIG:-auto} in
	af_packet)
		MP_RIG_PMD=net_af_packet MP_RIG_WHY="MP_RIG=af_packet" ;;
	af_xdp)
		mp_rig_probe "$dpns" "$dpif" "$q" || mp_fail "MP_RIG=af_xdp: $MP_RIG_WHY"
		MP_RIG_PMD=net_af_xdp MP_RIG_WHY="AF_XDP attaches to $dpif$MP_RIG_NOTE" ;;
	*)
		if mp_rig_probe "$dpns" "$dpif" "$q"; then
			MP_RIG_PMD=net_af_xdp MP_RIG_WHY="AF_XDP attaches to $dpif$MP_RIG_NOTE"
		else
			MP_RIG_PMD=net_af_packet
			MP_RIG_WHY="falling back: $MP_RIG_WHY"
		fi ;;
	esac
	echo "rig: $MP_RIG_PMD on veth $dpif (peer $peerif, offloads off): $MP_RIG_WHY" >&2
}

mp_rig_vdev() {
	local q=
	if [ "$MP_RIG_QUEUES" -gt 1 ]; then
		[ "$MP_RIG_PMD" = net_af_xdp ] && q=",queue_count=$MP_RIG_QUEUES" ||
			q=",qpairs=$MP_RIG_QUEUES"
	fi
	echo "${MP_RIG_PMD}_$1,iface=$MP_RIG_DPIF$q"
}
