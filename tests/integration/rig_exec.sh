#!/usr/bin/env bash
# rig_exec.sh CMD...: exec CMD with LIBXDP_OBJECT_PATH set and, when this
# process has a mount namespace of its own (ip netns exec makes one), a
# bpffs on /sys/fs/bpf, so libxdp can use its dispatcher. The mount goes
# away with the namespace; the machine's own mounts are never touched.
: "${LIBXDP_OBJECT_PATH:=/usr/lib/x86_64-linux-gnu/bpf}"
export LIBXDP_OBJECT_PATH
if [ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] &&
	! mountpoint -q /sys/fs/bpf 2>/dev/null; then
	mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi
exec "$@"
