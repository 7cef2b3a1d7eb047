/*
 * libFuzzer target for utcp_input: one stack with a listener (port 25) and
 * an active open to 10.0.0.2:25. The input is a series of segments, each
 * "dir flags wnd:2 seqoff:4 ackoff:2 pad optlen len:2 opts payload"; seq and
 * ack are offsets from the connection's IRS/ISS (or absolute when the
 * direction byte is odd), so the fuzzer reaches every state. Output and
 * timers run after each segment on a clock moved by the direction byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utcp_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
emit(void *ctx, const struct utcp_seg_out *s)
{
	(void)ctx;
	if (s->optlen > UTCP_MAX_OPTLEN || s->iov[0].len + s->iov[1].len != s->len)
		abort();
	return 0;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct utcp_conf cf = { 0 };
	struct utcp_stack *st;
	struct utcp_conn *c;
	uint64_t now = 1000000;
	size_t off = 0;
	uint8_t buf[4096];

	memset(buf, 'x', sizeof(buf));
	cf.max_conns = 4;
	cf.laddr[0] = 0x0a000001u;
	cf.nladdr = 1;
	cf.emit = emit;
	cf.sndbuf = cf.rcvbuf = 8192;
	for (int i = 0; i < 16; i++)
		cf.secret[i] = (uint8_t)i;
	st = utcp_stack_new(&cf);
	if (st == NULL)
		return 0;
	utcp_clock(st, now);
	utcp_listen(st, 0x0a000001u, 25, NULL);
	c = utcp_connect(st, 0, 0x0a000002u, 25, NULL);
	utcp_output(st, now, 64);
	while (c != NULL && size - off >= 16) {
		const uint8_t *h = data + off;
		uint8_t dir = h[0], optlen = h[11] % (UTCP_MAX_OPTLEN + 1);
		uint16_t len = (uint16_t)((h[12] << 8 | h[13]) % 2048);
		struct utcp_seg_in s = { 0 };
		struct utcp_event ev[16];
		int n;

		off += 14;
		if (size - off < (size_t)optlen + len)
			break;
		s.saddr = 0x0a000002u;
		s.daddr = 0x0a000001u;
		s.sport = 25;
		s.dport = (dir & 2) ? 25 : c->lport;
		s.flags = h[1];
		s.wnd = (uint16_t)(h[2] << 8 | h[3]);
		s.seq = get32(h + 4) + ((dir & 1) ? 0 : c->irs);
		s.ack = get32(h + 8) & 0xffffff00u;
		s.ack = (dir & 1) ? s.ack : c->iss + (uint32_t)(h[8] << 8 | h[9]);
		s.opts = data + off;
		s.optlen = optlen;
		off += optlen;
		s.payload = data + off;
		s.len = len;
		off += len;
		now += (uint64_t)(dir >> 2) * 7000;
		utcp_input(st, &s, now);
		utcp_timers(st, now);
		while ((n = utcp_events(st, ev, 16)) > 0)
			for (int i = 0; i < n; i++) {
				if (ev[i].type == UTCP_EV_READABLE)
					while (utcp_recv(ev[i].conn, buf, sizeof(buf)) > 0)
						;
				if (ev[i].conn == c && (ev[i].type == UTCP_EV_ERROR ||
				    ev[i].type == UTCP_EV_CLOSED)) {
					utcp_close(c);
					c = NULL;
				} else if (ev[i].conn == c && ev[i].type == UTCP_EV_CONNECTED) {
					utcp_send(c, buf, 3000);
				}
			}
		utcp_output(st, now, 64);
	}
	utcp_stack_free(st);
	return 0;
}
