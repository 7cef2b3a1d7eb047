/*
 * Dataplane configuration and EAL start-up. dp_conf_defaults() gives a
 * configuration that runs on a tap device with no hugepages required;
 * dp_eal_init() turns the configuration into EAL arguments: never PCI
 * probing unless a PCI address is given, and hugepages only when they are
 * reserved, in in-memory mode so that no hugepage file outlives us.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_log.h>

#include "dp.h"

#define HUGETLBFS_MAGIC_ 0x958458f6

RTE_LOG_REGISTER_DEFAULT(dp_logtype, INFO);

void
dp_conf_defaults(struct dp_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->vdev, sizeof(c->vdev), "net_tap0,iface=mp0");
	snprintf(c->file_prefix, sizeof(c->file_prefix), "mailpump%d", (int)getpid());
	snprintf(c->lcores, sizeof(c->lcores), "0,1");
	c->huge = -1;
	c->mem_mb = 256;
	c->n_mbufs = 8191;
	c->mtu = 1500;
	c->stats_interval_ms = 1000;
	c->garp_count = 3;
	c->idle_sleep_max_us = 200;
}

int
dp_conf_add_ip(struct dp_conf *c, const char *cidr)
{
	char buf[64], *slash, *end;
	struct in_addr a;
	long len = 32;

	if (c->ifa.n_ip >= DP_MAX_IPS || strlen(cidr) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, cidr);
	slash = strchr(buf, '/');
	if (slash != NULL) {
		*slash = '\0';
		errno = 0;
		len = strtol(slash + 1, &end, 10);
		if (errno || *end || end == slash + 1 || len < 1 || len > 32)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, buf, &a) != 1 || a.s_addr == 0)
		return -EINVAL;
	if (c->ifa.n_ip == 0)
		c->ifa.prefixlen = (uint8_t)len;
	c->ifa.ip[c->ifa.n_ip++] = a.s_addr;
	return 0;
}

int
dp_conf_set_gw(struct dp_conf *c, const char *ip)
{
	struct in_addr a;

	if (inet_pton(AF_INET, ip, &a) != 1 || a.s_addr == 0)
		return -EINVAL;
	c->ifa.gw = a.s_addr;
	return 0;
}

int
dp_conf_check(const struct dp_conf *c, char *msg, size_t len)
{
	if (c->ifa.n_ip == 0) {
		snprintf(msg, len, "ip: at least one local address is required");
		return -EINVAL;
	}
	if (c->vdev[0] == '\0' && c->pci[0] == '\0') {
		snprintf(msg, len, "vdev/pci: no device given");
		return -EINVAL;
	}
	if (c->ifa.gw != 0 && dp_ifaddr_next_hop(&c->ifa, c->ifa.gw) != c->ifa.gw) {
		snprintf(msg, len, "gw: gateway is not inside the first address's subnet");
		return -EINVAL;
	}
	if (c->mtu < 576 || c->mtu > 9000) {
		snprintf(msg, len, "mtu: must be between 576 and 9000");
		return -EINVAL;
	}
	if (c->n_mbufs < 1023) {
		snprintf(msg, len, "mbufs: at least 1023");
		return -EINVAL;
	}
	return 0;
}

int
dp_huge_available(unsigned int mb)
{
	FILE *f = fopen("/proc/mounts", "r");
	char line[512], dev[128], dir[256], type[64];
	unsigned long free_pages = 0;
	int mounted = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%127s %255s %63s", dev, dir, type) == 3 &&
		    strcmp(type, "hugetlbfs") == 0) {
			struct statfs st;

			if (statfs(dir, &st) == 0 && st.f_type == HUGETLBFS_MAGIC_ &&
			    st.f_bsize == 2 * 1024 * 1024)
				mounted = 1;
		}
	}
	fclose(f);
	if (!mounted)
		return 0;
	f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu", &free_pages) != 1)
		free_pages = 0;
	fclose(f);
	return free_pages * 2 >= mb;
}

void
dp_signals_for_workers(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGIO);
	for (int s = SIGRTMIN; s <= SIGRTMAX; s++)
		sigaddset(set, s);
}

int
dp_eal_init(const struct dp_conf *c, const char *prog)
{
	char *argv[64];
	char mem[32];
	sigset_t sigs;
	int argc = 0, huge;

	argv[argc++] = (char *)(uintptr_t)prog;
	argv[argc++] = "--lcores";
	argv[argc++] = (char *)(uintptr_t)c->lcores;
	argv[argc++] = "--file-prefix";
	argv[argc++] = (char *)(uintptr_t)c->file_prefix;
	if (c->pci[0] != '\0') {
		argv[argc++] = "-a";
		argv[argc++] = (char *)(uintptr_t)c->pci;
	} else {
		argv[argc++] = "--no-pci";
	}
	if (c->vdev[0] != '\0') {
		argv[argc++] = "--vdev";
		argv[argc++] = (char *)(uintptr_t)c->vdev;
	}
	huge = c->huge >= 0 ? c->huge : dp_huge_available(c->mem_mb);
	snprintf(mem, sizeof(mem), "%u", c->mem_mb);
	if (huge) {
		argv[argc++] = "--in-memory";
	} else {
		argv[argc++] = "--no-huge";
		argv[argc++] = "-m";
		argv[argc++] = mem;
	}
	for (int i = 0; i < c->eal_argc && argc < 62; i++)
		argv[argc++] = c->eal_argv[i];
	argv[argc] = NULL;
	/* The tap PMD announces waiting frames with a signal (SIGIO, or a
	 * real-time one set with F_SETSIG), one per frame. Blocked here, so
	 * in every thread EAL creates, and unblocked by the worker lcores only
	 * (dp_signals_for_workers): the kernel then hands each to a worker
	 * that is running, or wakes a sleeping one, which is what a frame
	 * should do, instead of waking the main lcore or a control thread. */
	dp_signals_for_workers(&sigs);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	return rte_eal_init(argc, argv);
}
