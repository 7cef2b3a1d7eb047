/*
 * mailpump daemon entry. Parses options, starts EAL with --no-pci and a
 * virtual device unless a PCI address is given, brings the port up, runs
 * one worker per worker lcore, and from the main lcore publishes counters
 * (stats file, telemetry) until SIGINT/SIGTERM or --duration. On the way
 * out: workers stop, the port closes, EAL cleans up, counters are printed.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>

#include "dp.h"

static void
usage(FILE *f, const char *prog)
{
	fprintf(f,
"usage: %s [options] [-- EAL options]\n"
"\n"
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
"  --help\n", prog);
}

static void
on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
}

static int
parse_uint(const char *s, unsigned int max, unsigned int *out)
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

enum {
	OPT_VDEV = 256, OPT_PCI, OPT_IP, OPT_GW, OPT_LCORES, OPT_PREFIX,
	OPT_HUGE, OPT_MEM, OPT_MBUFS, OPT_MTU, OPT_STATS_FILE, OPT_STATS_IVL,
	OPT_PING_GW, OPT_GARP, OPT_IDLE, OPT_DURATION, OPT_HELP,
};

static const struct option options[] = {
	{"vdev", required_argument, NULL, OPT_VDEV},
	{"pci", required_argument, NULL, OPT_PCI},
	{"ip", required_argument, NULL, OPT_IP},
	{"gw", required_argument, NULL, OPT_GW},
	{"lcores", required_argument, NULL, OPT_LCORES},
	{"file-prefix", required_argument, NULL, OPT_PREFIX},
	{"huge", required_argument, NULL, OPT_HUGE},
	{"mem", required_argument, NULL, OPT_MEM},
	{"mbufs", required_argument, NULL, OPT_MBUFS},
	{"mtu", required_argument, NULL, OPT_MTU},
	{"stats-file", required_argument, NULL, OPT_STATS_FILE},
	{"stats-interval", required_argument, NULL, OPT_STATS_IVL},
	{"ping-gw", required_argument, NULL, OPT_PING_GW},
	{"garp", required_argument, NULL, OPT_GARP},
	{"idle-sleep", required_argument, NULL, OPT_IDLE},
	{"duration", required_argument, NULL, OPT_DURATION},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0},
};

/* @return 0, 1 for --help, or -EINVAL after printing which option is wrong. */
static int
parse_args(int argc, char **argv, struct dp_conf *c)
{
	unsigned int v;
	int opt, ret = 0;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case OPT_VDEV:
			ret = copy_str(c->vdev, sizeof(c->vdev), optarg);
			break;
		case OPT_PCI:
			ret = copy_str(c->pci, sizeof(c->pci), optarg);
			if (ret == 0)
				c->vdev[0] = '\0';
			break;
		case OPT_IP:
			ret = dp_conf_add_ip(c, optarg);
			break;
		case OPT_GW:
			ret = dp_conf_set_gw(c, optarg);
			break;
		case OPT_LCORES:
			ret = copy_str(c->lcores, sizeof(c->lcores), optarg);
			break;
		case OPT_PREFIX:
			ret = copy_str(c->file_prefix, sizeof(c->file_prefix), optarg);
			break;
		case OPT_HUGE:
			if (strcmp(optarg, "auto") == 0)
				c->huge = -1;
			else if (strcmp(optarg, "yes") == 0)
				c->huge = 1;
			else if (strcmp(optarg, "no") == 0)
				c->huge = 0;
			else
				ret = -EINVAL;
			break;
		case OPT_MEM:
			ret = parse_uint(optarg, 1 << 20, &c->mem_mb);
			break;
		case OPT_MBUFS:
			ret = parse_uint(optarg, 1 << 24, &c->n_mbufs);
			break;
		case OPT_MTU:
			ret = parse_uint(optarg, 9000, &v);
			c->mtu = (uint16_t)v;
			break;
		case OPT_STATS_FILE:
			ret = copy_str(c->stats_file, sizeof(c->stats_file), optarg);
			break;
		case OPT_STATS_IVL:
			ret = parse_uint(optarg, 3600000, &c->stats_interval_ms);
			if (ret == 0 && c->stats_interval_ms == 0)
				ret = -EINVAL;
			break;
		case OPT_PING_GW:
			ret = parse_uint(optarg, 65535, &c->ping_gw);
			break;
		case OPT_GARP:
			ret = parse_uint(optarg, 100, &c->garp_count);
			break;
		case OPT_IDLE:
			ret = parse_uint(optarg, 100000, &c->idle_sleep_max_us);
			break;
		case OPT_DURATION:
			ret = parse_uint(optarg, 86400 * 365, &c->duration_s);
			break;
		case OPT_HELP:
			usage(stdout, argv[0]);
			return 1;
		default:
			usage(stderr, argv[0]);
			return -EINVAL;
		}
		if (ret != 0) {
			fprintf(stderr, "%s: invalid value for --%s: %s\n", argv[0],
				options[opt - OPT_VDEV].name, optarg);
			return -EINVAL;
		}
	}
	c->eal_argc = argc - optind;
	c->eal_argv = argv + optind;
	return 0;
}

int
main(int argc, char **argv)
{
	struct dp_conf conf;
	struct dp_port port;
	struct dp_worker *workers = NULL;
	uint64_t hz, start, next_stats;
	char msg[256];
	int n, ret;

	dp_conf_defaults(&conf);
	ret = parse_args(argc, argv, &conf);
	if (ret != 0)
		return ret > 0 ? 0 : 2;
	if (dp_conf_check(&conf, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "%s: bad configuration: %s\n", argv[0], msg);
		return 2;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (dp_eal_init(&conf, argv[0]) < 0) {
		fprintf(stderr, "%s: EAL start failed: %s\n", argv[0],
			rte_strerror(rte_errno));
		return 1;
	}
	ret = 1;
	if (rte_lcore_count() < 2) {
		fprintf(stderr, "%s: --lcores needs a main lcore and at least one worker\n",
			argv[0]);
		goto out_eal;
	}
	if (dp_port_init(&port, &conf, rte_lcore_count() - 1) != 0)
		goto out_eal;
	n = dp_workers_start(&port, &conf, &workers);
	if (n < 0) {
		fprintf(stderr, "%s: starting workers: %s\n", argv[0], strerror(-n));
		__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
		rte_eal_mp_wait_lcore();
		goto out_port;
	}
	dp_stats_telemetry_register(&port, workers, (unsigned int)n);
	DP_LOG(NOTICE, "running: port=%s workers=%d", port.name, n);

	hz = rte_get_tsc_hz();
	start = rte_rdtsc();
	next_stats = start;
	while (!__atomic_load_n(&dp_stop, __ATOMIC_RELAXED)) {
		uint64_t now = rte_rdtsc();

		if (conf.stats_file[0] != '\0' && now >= next_stats) {
			if (dp_stats_write_file(conf.stats_file, &port, workers,
			    (unsigned int)n) != 0)
				DP_LOG(WARNING, "stats file %s: cannot write", conf.stats_file);
			next_stats = now + hz / 1000 * conf.stats_interval_ms;
		}
		if (conf.duration_s != 0 && now - start >= hz * conf.duration_s)
			break;
		usleep(20000);
	}
	DP_LOG(NOTICE, "stopping");
	__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
	rte_eal_mp_wait_lcore();
	dp_stats_print(stdout, workers, (unsigned int)n);
	if (conf.stats_file[0] != '\0')
		dp_stats_write_file(conf.stats_file, &port, workers, (unsigned int)n);
	dp_workers_stop(workers, (unsigned int)n);
	ret = 0;
out_port:
	dp_port_fini(&port);
out_eal:
	rte_eal_cleanup();
	return ret;
}
