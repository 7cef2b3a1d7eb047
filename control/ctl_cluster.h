/*
 * Redis Cluster routing for ctl_redis (hiredis 0.14 follows no MOVED or
 * ASK, and Debian 12 has no hiredis-cluster). This file knows the
 * cluster's rules and nothing of connections:
 *   ctl_cluster_slot()        the CRC16 hash slot of a key ({tag} rule)
 *   ctl_cluster_key_arg()     which argument of a command is its key
 *   ctl_cluster_cmd_argv()    a formatted (RESP) command back into argv
 *   ctl_cluster_map_parse()   a CLUSTER SLOTS reply into slot -> node
 *   ctl_cluster_redirect()    a MOVED or ASK error reply, parsed
 *   ctl_cluster_ns_tagged()   whether a namespace pins keys to one slot
 * ctl_redis.c keeps one connection per node and sends each command to
 * the primary of its key's slot (README "Redis Cluster").
 */
#ifndef CTL_CLUSTER_H
#define CTL_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define CTL_CLUSTER_SLOTS     16384
#define CTL_CLUSTER_NO_NODE   0xffff
#define CTL_CLUSTER_NODES_MAX 128
#define CTL_CLUSTER_HOST_MAX  256

/** The hash slot of key[0..len): CRC16 (XMODEM) of its {tag}, if any. */
uint16_t ctl_cluster_slot(const char *key, size_t len);

/** Key positions ctl_cluster_key_arg reports besides an index. */
#define CTL_CLUSTER_KEYLESS  0   /* any node (PING, INFO, EVALSHA with 0 keys) */
#define CTL_CLUSTER_ALL     -1   /* every primary (SCRIPT LOAD/FLUSH, FUNCTION) */

/**
 * @return the index in argv of the command's first key, CTL_CLUSTER_KEYLESS
 *         or CTL_CLUSTER_ALL. Commands with a key after a keyword
 *         (XREADGROUP/XREAD ... STREAMS k, XGROUP/XINFO sub k, EVAL/EVALSHA
 *         s n k, OBJECT/MEMORY sub k) are known; the rest take argv[1].
 */
int ctl_cluster_key_arg(int argc, const char **argv, const size_t *argvlen);

/**
 * Split a RESP-formatted command (redisFormatCommand's output) into its
 * first max arguments, pointing into cmd (not NUL-terminated: use
 * argvlen); the rest is not read.
 * @return the command's argc (may exceed max), or -EPROTO if what was
 *         read is not a well-formed array of bulk strings.
 */
int ctl_cluster_cmd_argv(const char *cmd, size_t len, int max,
	const char **argv, size_t *argvlen);

/** One node: an address as the cluster announces it. */
struct ctl_cluster_node {
	char host[CTL_CLUSTER_HOST_MAX];
	int port;
};

/** Slot owners: owner[slot] indexes nodes[], CTL_CLUSTER_NO_NODE if none. */
struct ctl_cluster_map {
	uint16_t owner[CTL_CLUSTER_SLOTS];
	struct ctl_cluster_node nodes[CTL_CLUSTER_NODES_MAX];
	uint8_t primary[CTL_CLUSTER_NODES_MAX];  /**< 1: owns a slot range */
	int nnodes;
	int slots_served;                       /**< slots with an owner */
};

/**
 * Find host:port in m's nodes, adding it (as a replica, not a primary)
 * when add is set.
 * @return its index, or -1 (absent and not added, or m full).
 */
int ctl_cluster_node_find(struct ctl_cluster_map *m, const char *host,
	int port, int add);

/**
 * Fill m from a CLUSTER SLOTS reply. Primaries and replicas become nodes
 * (replicas serve no slot: they are where a map can be read again after
 * a failover). An empty announced host means the node asked (asked_host).
 * @return 0, or -EPROTO with err saying what the reply got wrong.
 */
int ctl_cluster_map_parse(const redisReply *slots, const char *asked_host,
	struct ctl_cluster_map *m, char *err, size_t errlen);

/**
 * Parse "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"
 * (host may be an IPv6 address: the port follows the last colon).
 * @return 1 for MOVED, 2 for ASK, 0 if str is neither.
 */
int ctl_cluster_redirect(const char *str, unsigned *slot, char *host,
	size_t hostcap, int *port);

/**
 * @return 1 if ns holds a non-empty {tag} (the first '{' and the next
 *         '}'), so every key built on it has the same slot; 0 if not.
 */
int ctl_cluster_ns_tagged(const char *ns);

#endif
