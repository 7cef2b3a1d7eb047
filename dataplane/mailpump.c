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
	fprintf(f, "usage: %s [options] [-- EAL options]\n\n", prog);
	dp_options_usage(f);
	fprintf(f, "  --help\n");
}

static void
on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
}

enum { OPT_HELP = DP_OPT_LAST };

/* @return 0, 1 for --help, or -EINVAL after printing which option is wrong. */
static int
parse_args(int argc, char **argv, struct dp_conf *c)
{
	struct option opts[DP_OPT_LAST - DP_OPT_VDEV + 2];
	int opt;

	memcpy(opts, dp_long_options, dp_long_options_n * sizeof(opts[0]));
	opts[dp_long_options_n] = (struct option){"help", no_argument, NULL, OPT_HELP};
	memset(&opts[dp_long_options_n + 1], 0, sizeof(opts[0]));
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == OPT_HELP) {
			usage(stdout, argv[0]);
			return 1;
		}
		if (opt < DP_OPT_VDEV || opt >= DP_OPT_LAST) {
			usage(stderr, argv[0]);
			return -EINVAL;
		}
		if (dp_conf_apply_option(c, opt, optarg) != 0) {
			fprintf(stderr, "%s: invalid value for --%s: %s\n", argv[0],
				dp_option_name(opt), optarg);
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
	n = dp_workers_start(&port, &conf, &workers, NULL, NULL);
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
