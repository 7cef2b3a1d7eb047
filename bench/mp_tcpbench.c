/*
 * mp-tcpbench: drives the userspace TCP stack on a DPDK port against a
 * peer and prints one JSON line with what happened. Modes:
 *   echo     send --bytes per connection, read them back, verify, close
 *   connect  open and close (connection rate)
 *   bulk     send --bytes, half-close, read the peer's "OK <n> <fnv64>"
 *            summary (mp-tcpserver sink mode) and check it
 * Each worker lcore runs its share of --conns with its share of
 * --concurrency. The main lcore waits until every worker is done (or
 * --timeout), then reports, including whether every pool of the stack
 * came back to its start value. With --await-neighbour a worker keeps
 * only one connection open until the peer's (or gateway's) MAC is known,
 * so the first burst of SYNs does not overflow the ARP queue (and wait a
 * retransmission timeout), and the clock starts once it is known.
 * CPU time is each worker thread's own
 * (RUSAGE_THREAD) from its first poll to its last connection, and the
 * whole process's over the same window (proc_cpu_*), so EAL start-up and
 * the drain are not counted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include "dp_tcp.h"
#include "mp_tcppat.h"

#define OPEN_PER_POLL 64
#define RECV_CHUNK 16384
#define DRAIN_GRACE_US 5000000

enum mode { MODE_ECHO, MODE_CONNECT, MODE_BULK };
static const char *const mode_names[] = { "echo", "connect", "bulk" };

struct bench_conf {
	enum mode mode;
	uint32_t peer_ip;               /* host order */
	uint16_t peer_port;
	uint64_t conns;
	uint32_t concurrency;
	uint64_t bytes;
	unsigned int timeout_s;
	int await_neighbour;
	struct utcp_conf tcp;
};

struct bconn {
	struct utcp_conn *c;
	uint64_t idx;
	uint64_t sent, recvd;
	uint64_t hash;                  /* FNV-1a of what was sent (bulk) */
	char reply[64];
	uint8_t reply_len;
	uint8_t in_use;
};

struct bench_worker {
	struct dp_tcp tcp;
	const struct bench_conf *bc;
	struct bconn *slots;
	uint32_t *free_slots;           /* stack of free slot indexes */
	uint32_t n_free;
	uint32_t n_slots, open_now, peak;
	uint64_t to_open, next_idx, idx_stride;
	uint64_t ok, failed[UTCP_ERR_LAST], verify_failed, local_failed;
	uint64_t bytes_sent, bytes_verified;
	uint64_t start_us, end_us, drain_deadline;
	struct rusage ru_start, ru_end;  /* this worker thread, over the run */
	struct rusage rp_start, rp_end;  /* the whole process, same window */
	struct utcp_counters start_cnt;
	struct utcp_conn_info first;    /* the first established connection */
	int have_first;
	int done_conns;
	int finished;                   /* read by the main lcore */
};

static uint8_t pattern[MP_PAT_SIZE];
static struct bench_worker *bw;

static void
finish_conn(struct bench_worker *b, struct bconn *s, int ok)
{
	if (ok)
		b->ok++;
	utcp_close(s->c);
	s->in_use = 0;
	s->c = NULL;
	b->open_now--;
	b->free_slots[b->n_free++] = (uint32_t)(s - b->slots);
}

static void
fail_conn(struct bench_worker *b, struct bconn *s, enum utcp_err_reason why)
{
	b->failed[why]++;
	finish_conn(b, s, 0);
}

static void
send_more(struct bench_worker *b, struct bconn *s)
{
	while (s->sent < b->bc->bytes) {
		uint32_t contig;
		const uint8_t *p = mp_pat_at(pattern, s->idx, s->sent, &contig);
		uint64_t want = b->bc->bytes - s->sent;
		ssize_t n;

		if (want > contig)
			want = contig;
		n = utcp_send(s->c, p, (size_t)want);
		if (n <= 0) {
			if (n < 0 && n != -ENOBUFS) {
				b->local_failed++;
				finish_conn(b, s, 0);
			}
			return;
		}
		if (b->bc->mode == MODE_BULK)
			s->hash = mp_fnv1a(s->hash, p, (size_t)n);
		s->sent += (uint64_t)n;
		b->bytes_sent += (uint64_t)n;
	}
}

static void
check_bulk_reply(struct bench_worker *b, struct bconn *s)
{
	unsigned long long n = 0, h = 0;

	s->reply[s->reply_len] = '\0';
	if (sscanf(s->reply, "OK %llu %llx", &n, &h) == 2 && n == s->sent &&
	    h == s->hash && s->sent == b->bc->bytes) {
		b->bytes_verified += n;
		finish_conn(b, s, 1);
	} else {
		b->verify_failed++;
		finish_conn(b, s, 0);
	}
}

static void
on_readable(struct bench_worker *b, struct bconn *s)
{
	uint8_t buf[RECV_CHUNK];
	ssize_t n;

	while (s->in_use && (n = utcp_recv(s->c, buf, sizeof(buf))) > 0) {
		if (b->bc->mode == MODE_BULK) {
			size_t room = sizeof(s->reply) - 1 - s->reply_len;

			if ((size_t)n > room) {
				b->verify_failed++;
				finish_conn(b, s, 0);
				return;
			}
			memcpy(s->reply + s->reply_len, buf, (size_t)n);
			s->reply_len = (uint8_t)(s->reply_len + n);
			continue;
		}
		/* Echo: compare with what was sent at this offset. */
		for (ssize_t off = 0; off < n;) {
			uint32_t contig;
			const uint8_t *p = mp_pat_at(pattern, s->idx, s->recvd, &contig);
			size_t k = (size_t)(n - off) < contig ? (size_t)(n - off) : contig;

			if (s->recvd + k > s->sent || memcmp(p, buf + off, k) != 0) {
				b->verify_failed++;
				finish_conn(b, s, 0);
				return;
			}
			s->recvd += k;
			off += (ssize_t)k;
		}
		b->bytes_verified += (uint64_t)n;
		if (s->recvd == b->bc->bytes) {
			finish_conn(b, s, 1);
			return;
		}
	}
	if (s->in_use && n == 0) {
		/* End of stream from the peer. */
		if (b->bc->mode == MODE_BULK)
			check_bulk_reply(b, s);
		else {
			b->verify_failed++;
			finish_conn(b, s, 0);
		}
	}
}

static void
on_event(void *app, struct dp_worker *w, const struct utcp_event *ev)
{
	struct bench_worker *b = app;
	struct bconn *s = ev->user;

	(void)w;
	if (s == NULL || !s->in_use || s->c != ev->conn)
		return;
	switch (ev->type) {
	case UTCP_EV_CONNECTED:
		if (!b->have_first) {
			utcp_conn_get_info(s->c, &b->first);
			b->have_first = 1;
		}
		if (b->bc->mode == MODE_CONNECT) {
			finish_conn(b, s, 1);
			return;
		}
		send_more(b, s);
		if (s->in_use && b->bc->mode == MODE_BULK && s->sent == b->bc->bytes)
			utcp_shutdown(s->c);
		return;
	case UTCP_EV_WRITABLE: {
		uint64_t before = s->sent;

		send_more(b, s);
		if (s->in_use && b->bc->mode == MODE_BULK && before < b->bc->bytes &&
		    s->sent == b->bc->bytes)
			utcp_shutdown(s->c);
		return;
	}
	case UTCP_EV_READABLE:
	case UTCP_EV_PEER_CLOSED:
		on_readable(b, s);
		return;
	case UTCP_EV_ERROR:
		fail_conn(b, s, ev->reason);
		return;
	case UTCP_EV_CLOSED:
		if (b->bc->mode == MODE_BULK && s->reply_len > 0)
			check_bulk_reply(b, s);
		else {
			b->verify_failed++;
			finish_conn(b, s, 0);
		}
		return;
	default:
		return;
	}
}

static int
pools_back(const struct utcp_counters *a, const struct utcp_counters *b)
{
	return a->conn_free == b->conn_free && a->sndbuf_free == b->sndbuf_free &&
		a->rcvbuf_free == b->rcvbuf_free;
}

/* @return non-zero once the next hop towards the peer has a usable MAC. */
static int
neighbour_known(const struct bench_worker *b, const struct dp_worker *w)
{
	uint32_t hop = dp_ifaddr_next_hop(&w->port->ifa, rte_cpu_to_be_32(b->bc->peer_ip));
	const struct dp_arp_entry *e = dp_arp_lookup(&w->arp, hop);

	return e != NULL && (e->state == DP_ARP_REACHABLE || e->state == DP_ARP_STALE);
}

static int
bench_poll(void *app, struct dp_worker *w, uint64_t now_us)
{
	struct bench_worker *b = app;
	uint32_t max_open = b->n_slots;
	int work = 0;

	if (b->start_us == 0) {
		if (b->bc->await_neighbour && !neighbour_known(b, w))
			max_open = 1;
		else {
			b->start_us = now_us;
			getrusage(RUSAGE_THREAD, &b->ru_start);
			getrusage(RUSAGE_SELF, &b->rp_start);
		}
	}
	for (int i = 0; i < OPEN_PER_POLL && b->to_open > 0 &&
	     b->open_now < max_open; i++) {
		struct bconn *s = &b->slots[b->free_slots[b->n_free - 1]];

		memset(s, 0, sizeof(*s));
		s->idx = b->next_idx;
		s->hash = MP_FNV1A_INIT;
		s->c = utcp_connect(b->tcp.stack, 0, b->bc->peer_ip, b->bc->peer_port, s);
		if (s->c == NULL)
			break;  /* ports or objects busy: try again next poll */
		s->in_use = 1;
		b->n_free--;
		b->next_idx += b->idx_stride;
		b->to_open--;
		b->open_now++;
		if (b->open_now > b->peak)
			b->peak = b->open_now;
		work++;
	}
	if (!b->done_conns && b->to_open == 0 && b->open_now == 0) {
		if (b->start_us == 0) {     /* the neighbour never answered */
			b->start_us = now_us;
			getrusage(RUSAGE_THREAD, &b->ru_start);
			getrusage(RUSAGE_SELF, &b->rp_start);
		}
		b->done_conns = 1;
		b->end_us = now_us;
		getrusage(RUSAGE_THREAD, &b->ru_end);
		getrusage(RUSAGE_SELF, &b->rp_end);
		b->drain_deadline = now_us + DRAIN_GRACE_US;
	}
	if (b->done_conns && !b->finished) {
		struct utcp_counters now;

		/* Closes finish in the stack after the handles are gone. */
		utcp_stack_counters(b->tcp.stack, &now);
		if (pools_back(&b->start_cnt, &now) || now_us >= b->drain_deadline)
			__atomic_store_n(&b->finished, 1, __ATOMIC_RELEASE);
	}
	(void)w;
	return work;
}

struct setup_arg {
	const struct bench_conf *bc;
	const struct dp_steer *steer;
	unsigned int n;
};

static int
setup_worker(struct dp_worker *w, void *arg)
{
	const struct setup_arg *a = arg;
	struct bench_worker *b = &bw[w->id];
	const struct bench_conf *bc = a->bc;
	struct dp_tcp_app app = { on_event, bench_poll, b };
	int ret;

	b->bc = bc;
	b->to_open = bc->conns / a->n + (w->id < bc->conns % a->n);
	b->n_slots = bc->concurrency / a->n + (w->id < bc->concurrency % a->n);
	if (b->n_slots == 0)
		b->n_slots = 1;
	b->next_idx = w->id;
	b->idx_stride = a->n;
	b->slots = rte_zmalloc("bench_slots", sizeof(*b->slots) * b->n_slots, 0);
	b->free_slots = rte_zmalloc("bench_free", sizeof(uint32_t) * b->n_slots, 0);
	if (b->slots == NULL || b->free_slots == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < b->n_slots; i++)
		b->free_slots[i] = b->n_slots - 1 - i;
	b->n_free = b->n_slots;
	ret = dp_tcp_attach(w, &b->tcp, &bc->tcp, a->steer, &app);
	if (ret < 0)
		return ret;
	utcp_stack_counters(b->tcp.stack, &b->start_cnt);
	return 0;
}

static double
tv_s(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void
report(const struct bench_conf *bc, const struct dp_worker *w, unsigned int n,
	double seconds, int timed_out)
{
	uint64_t ok = 0, failed[UTCP_ERR_LAST] = {0}, verify = 0, local = 0;
	uint64_t sent = 0, verified = 0, peak = 0, incomplete = 0;
	struct utcp_counters tot = {0};
	struct dp_counters dc;
	uint64_t drops = 0, conns_done;
	double cpu_user = 0, cpu_sys = 0, proc_user = 0, proc_sys = 0;
	const struct bench_worker *first = NULL, *last = NULL;
	int pools = 1;

	for (unsigned int i = 0; i < n; i++) {
		struct bench_worker *b = &bw[i];
		struct utcp_counters c;

		ok += b->ok;
		for (int r = 0; r < UTCP_ERR_LAST; r++)
			failed[r] += b->failed[r];
		verify += b->verify_failed;
		local += b->local_failed;
		sent += b->bytes_sent;
		verified += b->bytes_verified;
		peak += b->peak;
		incomplete += b->to_open + b->open_now;
		if (b->done_conns) {
			cpu_user += tv_s(&b->ru_end.ru_utime) - tv_s(&b->ru_start.ru_utime);
			cpu_sys += tv_s(&b->ru_end.ru_stime) - tv_s(&b->ru_start.ru_stime);
			if (first == NULL || b->start_us < first->start_us)
				first = b;
			if (last == NULL || b->end_us > last->end_us)
				last = b;
		}
		utcp_stack_counters(b->tcp.stack, &c);
		pools &= pools_back(&b->start_cnt, &c);
		tot.retransmits += c.retransmits;
		tot.rto_fired += c.rto_fired;
		tot.fast_recoveries += c.fast_recoveries;
		tot.syn_retransmits += c.syn_retransmits;
		tot.segs_in += c.segs_in;
		tot.segs_out += c.segs_out;
		tot.tw_reused += c.tw_reused;
		tot.tw_recycled += c.tw_recycled;
		tot.challenge_acks += c.challenge_acks;
	}
	if (first != NULL && last != NULL) {
		/* Every thread of the process from the first worker's start to
		 * the last one's end: the main lcore and EAL's threads too. */
		proc_user = tv_s(&last->rp_end.ru_utime) - tv_s(&first->rp_start.ru_utime);
		proc_sys = tv_s(&last->rp_end.ru_stime) - tv_s(&first->rp_start.ru_stime);
	}
	conns_done = ok + verify + local;
	for (int r = 0; r < UTCP_ERR_LAST; r++)
		conns_done += failed[r];
	dp_stats_sum(w, n, &dc, NULL);
	for (int i = 0; i < DP_DROP_LAST; i++)
		drops += dc.drops[i];
	printf("{\"mode\":\"%s\",\"workers\":%u,\"conns\":%llu,\"concurrency\":%u,"
		"\"bytes_per_conn\":%llu,\"ok\":%llu,\"failed\":{\"refused\":%llu,"
		"\"timeout\":%llu,\"reset\":%llu,\"unreachable\":%llu,\"verify\":%llu,"
		"\"local\":%llu,\"incomplete\":%llu},\"bytes_sent\":%llu,"
		"\"bytes_verified\":%llu,\"seconds\":%.3f,\"conns_per_s\":%.1f,"
		"\"gbit_per_s\":%.3f,\"peak_concurrency\":%llu,\"timed_out\":%s,"
		"\"pools_restored\":%s,\"conn_state_bytes\":%zu,\"retransmits\":%llu,"
		"\"rto_fired\":%llu,\"fast_recoveries\":%llu,\"syn_retransmits\":%llu,"
		"\"tw_reused\":%llu,\"tw_recycled\":%llu,\"segs_in\":%llu,\"segs_out\":%llu,"
		"\"busy_cycles\":%llu,\"busy_cycles_per_conn\":%.0f,\"tsc_hz\":%llu,"
		"\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"proc_cpu_user_s\":%.3f,"
		"\"proc_cpu_sys_s\":%.3f,\"conn_stack_bytes\":%zu,\"tx_stalls\":%llu,"
		"\"drops_total\":%llu,\"drops\":{",
		mode_names[bc->mode], n, (unsigned long long)bc->conns, bc->concurrency,
		(unsigned long long)bc->bytes, (unsigned long long)ok,
		(unsigned long long)failed[UTCP_ERR_REFUSED],
		(unsigned long long)failed[UTCP_ERR_TIMEOUT],
		(unsigned long long)failed[UTCP_ERR_RESET],
		(unsigned long long)failed[UTCP_ERR_UNREACHABLE],
		(unsigned long long)verify, (unsigned long long)local,
		(unsigned long long)incomplete, (unsigned long long)sent,
		(unsigned long long)verified, seconds,
		seconds > 0 ? (double)ok / seconds : 0.0,
		seconds > 0 ? (double)(bc->mode == MODE_BULK ? verified : sent + verified) *
			8 / seconds / 1e9 : 0.0,
		(unsigned long long)peak, timed_out ? "true" : "false",
		pools ? "true" : "false", utcp_conn_size(),
		(unsigned long long)tot.retransmits, (unsigned long long)tot.rto_fired,
		(unsigned long long)tot.fast_recoveries,
		(unsigned long long)tot.syn_retransmits,
		(unsigned long long)tot.tw_reused, (unsigned long long)tot.tw_recycled,
		(unsigned long long)tot.segs_in, (unsigned long long)tot.segs_out,
		(unsigned long long)dc.busy_cycles,
		conns_done ? (double)dc.busy_cycles / (double)conns_done : 0.0,
		(unsigned long long)rte_get_tsc_hz(), cpu_user, cpu_sys, proc_user, proc_sys,
		n > 0 ? utcp_stack_state_bytes(bw[0].tcp.stack) /
			utcp_stack_max_conns(bw[0].tcp.stack) : 0,
		(unsigned long long)dc.tx_stalls, (unsigned long long)drops);
	for (int i = 0, first = 1; i < DP_DROP_LAST; i++)
		if (dc.drops[i] != 0) {
			printf("%s\"%s\":%llu", first ? "" : ",", dp_drop_names[i],
				(unsigned long long)dc.drops[i]);
			first = 0;
		}
	printf("}");
	for (unsigned int i = 0; i < n; i++) {
		const struct utcp_conn_info *f = &bw[i].first;

		if (!bw[i].have_first)
			continue;
		/* What the first connection negotiated with the peer. */
		printf(",\"first\":{\"mss\":%u,\"ts_ok\":%u,\"sack_ok\":%u,"
			"\"snd_wscale\":%u,\"rcv_wscale\":%u,\"srtt_us\":%u}",
			f->mss, f->ts_ok, f->sack_ok, f->snd_wscale, f->rcv_wscale,
			f->srtt_us);
		break;
	}
	printf("}\n");
	fflush(stdout);
}

static void
usage(FILE *f, const char *prog)
{
	fprintf(f,
"usage: %s [options] --peer IP:PORT [-- EAL options]\n"
"\n"
"Benchmark options:\n"
"  --mode MODE         echo (default), connect or bulk\n"
"  --peer IP:PORT      the server (mp-tcpserver echo or sink mode)\n"
"  --conns N           connections in all (default 1)\n"
"  --concurrency N     connections open at once (default 1)\n"
"  --bytes N           bytes per connection, echo and bulk (default 65536)\n"
"  --timeout S         give up after S seconds (default 60)\n"
"  --cc ALGO           cubic (default) or newreno\n"
"  --max-conns N       connection objects per worker (default concurrency + 64)\n"
"  --sndbuf N          send buffer per connection (default 65536)\n"
"  --rcvbuf N          receive buffer per connection (default 65536)\n"
"  --rto-min-ms N      minimum RTO (default 1000, RFC 6298)\n"
"  --syn-retries N     SYN retransmissions before a timeout (default 6)\n"
"  --time-wait-ms N    TIME_WAIT length (default 60000)\n"
"  --no-timestamps, --no-sack, --no-wscale   disable a TCP option\n"
"  --await-neighbour   one connection until the peer's MAC is known, then\n"
"                      start the clock (benchmarks: no ARP-queue drops)\n"
"\n", prog);
	dp_options_usage(f);
	fprintf(f, "  --help\n\nPrints one JSON line with the results.\n");
}

enum {
	OPT_MODE = DP_OPT_LAST, OPT_PEER, OPT_CONNS, OPT_CONC, OPT_BYTES,
	OPT_TIMEOUT, OPT_CC, OPT_MAXC, OPT_SNDBUF, OPT_RCVBUF, OPT_RTOMIN,
	OPT_SYNR, OPT_TW, OPT_NOTS, OPT_NOSACK, OPT_NOWS, OPT_AWAIT, OPT_HELP,
};

static const struct option bench_options[] = {
	{"mode", required_argument, NULL, OPT_MODE},
	{"peer", required_argument, NULL, OPT_PEER},
	{"conns", required_argument, NULL, OPT_CONNS},
	{"concurrency", required_argument, NULL, OPT_CONC},
	{"bytes", required_argument, NULL, OPT_BYTES},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"cc", required_argument, NULL, OPT_CC},
	{"max-conns", required_argument, NULL, OPT_MAXC},
	{"sndbuf", required_argument, NULL, OPT_SNDBUF},
	{"rcvbuf", required_argument, NULL, OPT_RCVBUF},
	{"rto-min-ms", required_argument, NULL, OPT_RTOMIN},
	{"syn-retries", required_argument, NULL, OPT_SYNR},
	{"time-wait-ms", required_argument, NULL, OPT_TW},
	{"no-timestamps", no_argument, NULL, OPT_NOTS},
	{"no-sack", no_argument, NULL, OPT_NOSACK},
	{"no-wscale", no_argument, NULL, OPT_NOWS},
	{"await-neighbour", no_argument, NULL, OPT_AWAIT},
	{"help", no_argument, NULL, OPT_HELP},
};

static int
parse_peer(const char *s, struct bench_conf *bc)
{
	char buf[64], *colon;
	struct in_addr a;
	unsigned int port;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	colon = strrchr(buf, ':');
	if (colon == NULL)
		return -EINVAL;
	*colon = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1 || dp_parse_uint(colon + 1, 65535, &port) ||
	    port == 0)
		return -EINVAL;
	bc->peer_ip = ntohl(a.s_addr);
	bc->peer_port = (uint16_t)port;
	return 0;
}

static int
parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || end == s || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int
parse_args(int argc, char **argv, struct dp_conf *c, struct bench_conf *bc)
{
	size_t nb = sizeof(bench_options) / sizeof(bench_options[0]);
	struct option opts[64];
	unsigned int v, maxc = 0;
	int opt, ret;

	memcpy(opts, dp_long_options, dp_long_options_n * sizeof(opts[0]));
	memcpy(opts + dp_long_options_n, bench_options, nb * sizeof(opts[0]));
	memset(&opts[dp_long_options_n + nb], 0, sizeof(opts[0]));
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		ret = 0;
		switch (opt) {
		case OPT_HELP:
			usage(stdout, argv[0]);
			return 1;
		case OPT_MODE:
			if (strcmp(optarg, "echo") == 0)
				bc->mode = MODE_ECHO;
			else if (strcmp(optarg, "connect") == 0)
				bc->mode = MODE_CONNECT;
			else if (strcmp(optarg, "bulk") == 0)
				bc->mode = MODE_BULK;
			else
				ret = -EINVAL;
			break;
		case OPT_PEER:
			ret = parse_peer(optarg, bc);
			break;
		case OPT_CONNS:
			ret = parse_u64(optarg, 1ULL << 40, &bc->conns);
			break;
		case OPT_CONC:
			ret = dp_parse_uint(optarg, 1 << 20, &bc->concurrency);
			if (bc->concurrency == 0)
				ret = -EINVAL;
			break;
		case OPT_BYTES:
			ret = parse_u64(optarg, 1ULL << 40, &bc->bytes);
			break;
		case OPT_TIMEOUT:
			ret = dp_parse_uint(optarg, 86400, &bc->timeout_s);
			break;
		case OPT_CC:
			if (strcmp(optarg, "cubic") == 0)
				bc->tcp.cc = UTCP_CC_CUBIC;
			else if (strcmp(optarg, "newreno") == 0)
				bc->tcp.cc = UTCP_CC_NEWRENO;
			else
				ret = -EINVAL;
			break;
		case OPT_MAXC:
			ret = dp_parse_uint(optarg, 1 << 22, &maxc);
			break;
		case OPT_SNDBUF:
			ret = dp_parse_uint(optarg, 1 << 26, &bc->tcp.sndbuf);
			break;
		case OPT_RCVBUF:
			ret = dp_parse_uint(optarg, 1 << 26, &bc->tcp.rcvbuf);
			break;
		case OPT_RTOMIN:
			ret = dp_parse_uint(optarg, 600000, &v);
			bc->tcp.rto_min_us = v * 1000;
			if (bc->tcp.rto_init_us < bc->tcp.rto_min_us)
				bc->tcp.rto_init_us = bc->tcp.rto_min_us;
			break;
		case OPT_SYNR:
			ret = dp_parse_uint(optarg, 100, &bc->tcp.syn_retries);
			break;
		case OPT_TW:
			ret = dp_parse_uint(optarg, 600000, &v);
			bc->tcp.time_wait_us = v * 1000;
			break;
		case OPT_NOTS:
			bc->tcp.no_timestamps = 1;
			break;
		case OPT_NOSACK:
			bc->tcp.no_sack = 1;
			break;
		case OPT_NOWS:
			bc->tcp.no_wscale = 1;
			break;
		case OPT_AWAIT:
			bc->await_neighbour = 1;
			break;
		default:
			if (opt >= DP_OPT_VDEV && opt < DP_OPT_LAST) {
				ret = dp_conf_apply_option(c, opt, optarg);
				break;
			}
			usage(stderr, argv[0]);
			return -EINVAL;
		}
		if (ret != 0) {
			fprintf(stderr, "%s: invalid value for option: %s\n", argv[0], optarg);
			return -EINVAL;
		}
	}
	if (bc->peer_ip == 0) {
		fprintf(stderr, "%s: --peer IP:PORT is required\n", argv[0]);
		return -EINVAL;
	}
	bc->tcp.max_conns = maxc ? maxc : bc->concurrency + 64;
	c->eal_argc = argc - optind;
	c->eal_argv = argv + optind;
	return 0;
}

static void
on_signal(int sig)
{
	(void)sig;
	__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
}

int
main(int argc, char **argv)
{
	struct bench_conf bc = { .mode = MODE_ECHO, .conns = 1, .concurrency = 1,
		.bytes = 65536, .timeout_s = 60 };
	struct dp_worker *workers = NULL;
	struct dp_steer steer;
	struct dp_conf conf;
	struct dp_port port;
	struct setup_arg sa;
	uint64_t hz, start, t0 = 0, t1 = 0;
	char msg[256];
	int n, ret, timed_out = 0;

	dp_conf_defaults(&conf);
	conf.garp_count = 1;
	ret = parse_args(argc, argv, &conf, &bc);
	if (ret != 0)
		return ret > 0 ? 0 : 2;
	if (bc.mode == MODE_CONNECT)
		bc.bytes = 0;
	if (dp_conf_check(&conf, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "%s: bad configuration: %s\n", argv[0], msg);
		return 2;
	}
	mp_pat_fill(pattern);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (dp_eal_init(&conf, argv[0]) < 0) {
		fprintf(stderr, "%s: EAL start failed: %s\n", argv[0], rte_strerror(rte_errno));
		return 1;
	}
	ret = 1;
	if (rte_lcore_count() < 2 || dp_port_init(&port, &conf, rte_lcore_count() - 1) != 0)
		goto out_eal;
	sa.n = rte_lcore_count() - 1;
	sa.bc = &bc;
	sa.steer = &steer;
	if (dp_steer_init(&steer, &port, sa.n) != 0)
		goto out_port;
	bw = rte_zmalloc("bench", sizeof(*bw) * sa.n, RTE_CACHE_LINE_SIZE);
	if (bw == NULL)
		goto out_port;
	n = dp_workers_start(&port, &conf, &workers, setup_worker, &sa);
	if (n < 0) {
		fprintf(stderr, "%s: starting workers: %s\n", argv[0], strerror(-n));
		__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
		rte_eal_mp_wait_lcore();
		goto out_port;
	}
	hz = rte_get_tsc_hz();
	start = rte_rdtsc();
	for (;;) {
		int all = 1;

		for (int i = 0; i < n; i++)
			all &= __atomic_load_n(&bw[i].finished, __ATOMIC_ACQUIRE);
		if (all || __atomic_load_n(&dp_stop, __ATOMIC_RELAXED))
			break;
		if (rte_rdtsc() - start >= hz * bc.timeout_s) {
			timed_out = 1;
			break;
		}
		usleep(10000);
	}
	__atomic_store_n(&dp_stop, 1, __ATOMIC_RELAXED);
	rte_eal_mp_wait_lcore();
	for (int i = 0; i < n; i++) {
		uint64_t s = bw[i].start_us, e = bw[i].end_us;

		if (s == 0)
			continue;       /* never started: its neighbour never resolved */
		if (e == 0)
			e = workers[i].now_us;
		if (t0 == 0 || s < t0)
			t0 = s;
		if (e > t1)
			t1 = e;
	}
	report(&bc, workers, (unsigned int)n, t1 > t0 ? (double)(t1 - t0) / 1e6 : 0,
		timed_out);
	for (int i = 0; i < n; i++) {
		dp_tcp_detach(&bw[i].tcp);
		rte_free(bw[i].slots);
		rte_free(bw[i].free_slots);
	}
	dp_workers_stop(workers, (unsigned int)n);
	ret = 0;
out_port:
	dp_port_fini(&port);
out_eal:
	rte_eal_cleanup();
	return ret;
}
