/*
 * Reading the workers' counters from the main lcore while they run: a sum
 * over workers, a JSON object (for the stats file and scripts), a table
 * for people, and a DPDK telemetry command (/mailpump/stats). Counters are
 * only ever written by their worker; reads here are relaxed loads.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_telemetry.h>

#include "dp.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* Every scalar counter once, by name: the JSON, the table and telemetry
 * all walk this list. */
#define DP_COUNTER_LIST(X) \
	X(rx_pkts) X(rx_bytes) X(tx_pkts) X(tx_bytes) \
	X(arp_rx) X(arp_req_tx) X(arp_reply_tx) X(garp_tx) \
	X(icmp_echo_rx) X(icmp_echo_reply_tx) X(icmp_echo_tx) \
	X(icmp_echo_reply_rx) X(icmp_unreach_rx) X(tcp_rx) \
	X(redirect_in) X(redirect_out) \
	X(loops) X(busy_loops) X(busy_cycles) X(idle_sleeps) X(tx_stalls)

#define DP_ARP_STAT_LIST(X) \
	X(hits) X(misses) X(requests_sent) X(learned) X(resolved) \
	X(failed) X(evicted) X(queue_full) X(pending_dropped)

static void
add_counters(struct dp_counters *sum, const struct dp_counters *c)
{
#define ADD(f) sum->f += LOAD(c->f);
	DP_COUNTER_LIST(ADD)
#undef ADD
	for (int i = 0; i < DP_DROP_LAST; i++)
		sum->drops[i] += LOAD(c->drops[i]);
}

void
dp_stats_sum(const struct dp_worker *w, unsigned int n, struct dp_counters *sum,
	struct dp_arp_stats *arp)
{
	memset(sum, 0, sizeof(*sum));
	if (arp != NULL)
		memset(arp, 0, sizeof(*arp));
	for (unsigned int i = 0; i < n; i++) {
		add_counters(sum, &w[i].cnt);
		if (arp != NULL) {
#define ADD(f) arp->f += LOAD(w[i].arp.stats.f);
			DP_ARP_STAT_LIST(ADD)
#undef ADD
		}
	}
}

static uint64_t
drops_total(const struct dp_counters *c)
{
	uint64_t t = 0;

	for (int i = 0; i < DP_DROP_LAST; i++)
		t += c->drops[i];
	return t;
}

static void
json_counters(FILE *f, const struct dp_counters *c)
{
#define J(x) fprintf(f, "\"" #x "\":%llu,", (unsigned long long)c->x);
	DP_COUNTER_LIST(J)
#undef J
	fprintf(f, "\"drops_total\":%llu,\"drops\":{",
		(unsigned long long)drops_total(c));
	for (int i = 0; i < DP_DROP_LAST; i++)
		fprintf(f, "%s\"%s\":%llu", i ? "," : "", dp_drop_names[i],
			(unsigned long long)c->drops[i]);
	fprintf(f, "}");
}

/* Entries in use over all workers' caches (a racy but harmless read). */
static unsigned int
arp_entries(const struct dp_worker *w, unsigned int n)
{
	unsigned int used = 0;

	for (unsigned int i = 0; i < n; i++)
		for (uint32_t j = 0; j <= w[i].arp.mask; j++)
			used += LOAD(w[i].arp.e[j].state) != DP_ARP_FREE;
	return used;
}

void
dp_stats_json(FILE *f, const struct dp_port *p, const struct dp_worker *w,
	unsigned int n)
{
	struct dp_counters sum;
	struct dp_arp_stats arp;

	dp_stats_sum(w, n, &sum, &arp);
	fprintf(f, "{\"port\":\"%s\",\"driver\":\"%s\",\"mac\":\""
		RTE_ETHER_ADDR_PRT_FMT "\",\"workers\":%u,\"tsc_hz\":%llu,",
		p->name, p->driver, RTE_ETHER_ADDR_BYTES(&p->ifa.mac), n,
		(unsigned long long)rte_get_tsc_hz());
	json_counters(f, &sum);
	fprintf(f, ",\"arp\":{");
#define J(x) fprintf(f, "\"" #x "\":%llu,", (unsigned long long)arp.x);
	DP_ARP_STAT_LIST(J)
#undef J
	fprintf(f, "\"entries\":%u},\"per_worker\":[", arp_entries(w, n));
	for (unsigned int i = 0; i < n; i++) {
		struct dp_counters one;

		memset(&one, 0, sizeof(one));
		add_counters(&one, &w[i].cnt);
		fprintf(f, "%s{\"worker\":%u,\"lcore\":%u,", i ? "," : "", i, w[i].lcore);
		json_counters(f, &one);
		fprintf(f, "}");
	}
	fprintf(f, "]}\n");
}

int
dp_stats_write_file(const char *path, const struct dp_port *p,
	const struct dp_worker *w, unsigned int n)
{
	char tmp[512];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (f == NULL)
		return -errno;
	dp_stats_json(f, p, w, n);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		return -errno;
	return 0;
}

void
dp_stats_print(FILE *f, const struct dp_worker *w, unsigned int n)
{
	struct dp_counters sum;
	struct dp_arp_stats arp;

	dp_stats_sum(w, n, &sum, &arp);
	fprintf(f, "%-22s %14s\n", "counter", "value");
#define P(x) fprintf(f, "%-22s %14llu\n", #x, (unsigned long long)sum.x);
	DP_COUNTER_LIST(P)
#undef P
#define P(x) fprintf(f, "%-22s %14llu\n", "arp_" #x, (unsigned long long)arp.x);
	DP_ARP_STAT_LIST(P)
#undef P
	for (int i = 0; i < DP_DROP_LAST; i++)
		if (sum.drops[i] != 0)
			fprintf(f, "drop_%-17s %14llu\n", dp_drop_names[i],
				(unsigned long long)sum.drops[i]);
}

static const struct dp_worker *tel_w;
static unsigned int tel_n;

static int
tel_stats(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct dp_counters sum;
	struct dp_arp_stats arp;

	(void)cmd;
	(void)params;
	dp_stats_sum(tel_w, tel_n, &sum, &arp);
	rte_tel_data_start_dict(d);
#define T(x) rte_tel_data_add_dict_u64(d, #x, sum.x);
	DP_COUNTER_LIST(T)
#undef T
#define T(x) rte_tel_data_add_dict_u64(d, "arp_" #x, arp.x);
	DP_ARP_STAT_LIST(T)
#undef T
	for (int i = 0; i < DP_DROP_LAST; i++) {
		char name[64];

		snprintf(name, sizeof(name), "drop_%s", dp_drop_names[i]);
		rte_tel_data_add_dict_u64(d, name, sum.drops[i]);
	}
	return 0;
}

void
dp_stats_telemetry_register(const struct dp_port *p, const struct dp_worker *w,
	unsigned int n)
{
	(void)p;
	tel_w = w;
	tel_n = n;
	rte_telemetry_register_cmd("/mailpump/stats", tel_stats,
		"Dataplane counters summed over workers. No parameters.");
}
