/*
 * Command-line options of the dataplane, shared by every program that runs
 * it (the mailpump daemon, mp-tcpbench): the option table, a usage text,
 * and the handler that applies one option to a dp_conf. A program adds its
 * own options after DP_OPT_LAST and hands the rest to dp_conf_apply_option().
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dp.h"

void
dp_options_usage(FILE *f)
{
	fputs(
"Dataplane options:\n"
"  --vdev STR          DPDK virtual device (default net_tap0,iface=mp0);\n"
"                      e.g. net_af_packet0,iface=veth0 for a veth\n"
"  --pci ADDR          use the real NIC at this PCI address instead of a vdev\n"
"  --ip A.B.C.D/LEN    local address (repeat for a pool; first sets the subnet)\n"
"  --gw A.B.C.D        gateway for off-subnet destinations\n"
"  --lcores LIST       EAL lcore list: the first is the main lcore, the rest\n"
"                      are workers, one port queue each (default 0,1)\n"
"  --file-prefix STR   EAL file prefix (default mailpump<pid>)\n"
"  --huge MODE         auto (default: hugepages when reserved), yes, no\n"
"  --mem MB            memory with --huge no (default 256)\n"
"  --mbufs N           mbuf pool size (default 8191)\n"
"  --mtu N             port MTU (default 1500)\n"
"  --stats-file PATH   write counters as JSON every --stats-interval\n"
"  --stats-interval MS (default 1000)\n"
"  --ping-gw N         send N echo requests to the gateway at start\n"
"  --garp N            gratuitous ARPs at start, 1 s apart (default 3)\n"
"  --idle-sleep US     longest idle back-off sleep of a worker (default 200)\n"
"  --duration S        stop after S seconds (default: run until a signal)\n"
"Anything after -- goes to EAL unchanged.\n", f);
}

int
dp_parse_uint(const char *s, unsigned int max, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || end == s || v > max)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

static int
copy_str(char *dst, size_t len, const char *src)
{
	if (strlen(src) >= len)
		return -EINVAL;
	strcpy(dst, src);
	return 0;
}

const struct option dp_long_options[] = {
	{"vdev", required_argument, NULL, DP_OPT_VDEV},
	{"pci", required_argument, NULL, DP_OPT_PCI},
	{"ip", required_argument, NULL, DP_OPT_IP},
	{"gw", required_argument, NULL, DP_OPT_GW},
	{"lcores", required_argument, NULL, DP_OPT_LCORES},
	{"file-prefix", required_argument, NULL, DP_OPT_PREFIX},
	{"huge", required_argument, NULL, DP_OPT_HUGE},
	{"mem", required_argument, NULL, DP_OPT_MEM},
	{"mbufs", required_argument, NULL, DP_OPT_MBUFS},
	{"mtu", required_argument, NULL, DP_OPT_MTU},
	{"stats-file", required_argument, NULL, DP_OPT_STATS_FILE},
	{"stats-interval", required_argument, NULL, DP_OPT_STATS_IVL},
	{"ping-gw", required_argument, NULL, DP_OPT_PING_GW},
	{"garp", required_argument, NULL, DP_OPT_GARP},
	{"idle-sleep", required_argument, NULL, DP_OPT_IDLE},
	{"duration", required_argument, NULL, DP_OPT_DURATION},
};

const size_t dp_long_options_n = sizeof(dp_long_options) / sizeof(dp_long_options[0]);

int
dp_conf_apply_option(struct dp_conf *c, int opt, const char *arg)
{
	unsigned int v;
	int ret = -EINVAL;

	switch (opt) {
	case DP_OPT_VDEV:
		ret = copy_str(c->vdev, sizeof(c->vdev), arg);
		break;
	case DP_OPT_PCI:
		ret = copy_str(c->pci, sizeof(c->pci), arg);
		if (ret == 0)
			c->vdev[0] = '\0';
		break;
	case DP_OPT_IP:
		ret = dp_conf_add_ip(c, arg);
		break;
	case DP_OPT_GW:
		ret = dp_conf_set_gw(c, arg);
		break;
	case DP_OPT_LCORES:
		ret = copy_str(c->lcores, sizeof(c->lcores), arg);
		break;
	case DP_OPT_PREFIX:
		ret = copy_str(c->file_prefix, sizeof(c->file_prefix), arg);
		break;
	case DP_OPT_HUGE:
		ret = 0;
		if (strcmp(arg, "auto") == 0)
			c->huge = -1;
		else if (strcmp(arg, "yes") == 0)
			c->huge = 1;
		else if (strcmp(arg, "no") == 0)
			c->huge = 0;
		else
			ret = -EINVAL;
		break;
	case DP_OPT_MEM:
		ret = dp_parse_uint(arg, 1 << 20, &c->mem_mb);
		break;
	case DP_OPT_MBUFS:
		ret = dp_parse_uint(arg, 1 << 24, &c->n_mbufs);
		break;
	case DP_OPT_MTU:
		ret = dp_parse_uint(arg, 9000, &v);
		c->mtu = (uint16_t)v;
		break;
	case DP_OPT_STATS_FILE:
		ret = copy_str(c->stats_file, sizeof(c->stats_file), arg);
		break;
	case DP_OPT_STATS_IVL:
		ret = dp_parse_uint(arg, 3600000, &c->stats_interval_ms);
		if (ret == 0 && c->stats_interval_ms == 0)
			ret = -EINVAL;
		break;
	case DP_OPT_PING_GW:
		ret = dp_parse_uint(arg, 65535, &c->ping_gw);
		break;
	case DP_OPT_GARP:
		ret = dp_parse_uint(arg, 100, &c->garp_count);
		break;
	case DP_OPT_IDLE:
		ret = dp_parse_uint(arg, 100000, &c->idle_sleep_max_us);
		break;
	case DP_OPT_DURATION:
		ret = dp_parse_uint(arg, 86400 * 365, &c->duration_s);
		break;
	}
	return ret;
}

const char *
dp_option_name(int opt)
{
	for (size_t i = 0; i < dp_long_options_n; i++)
		if (dp_long_options[i].val == opt)
			return dp_long_options[i].name;
	return "?";
}
