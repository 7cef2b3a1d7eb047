/*
 * Sender-side SACK scoreboard (RFC 2018 blocks, RFC 6675 loss recovery).
 * utcp_in.c feeds the blocks of each ACK (utcp_sb_update) and the new
 * cumulative ACK (utcp_sb_ack); utcp_out.c asks which hole to resend next
 * (utcp_sb_next_seg) and how much is in flight (utcp_sb_pipe). Ranges are
 * kept sorted and disjoint; comparisons are made on offsets from SND.UNA so
 * that sequence wrap is harmless. When the table is full the highest range
 * is forgotten: it matters least for deciding what to resend.
 */
#include <string.h>

#include "utcp_impl.h"

void
utcp_sb_reset(struct utcp_scoreboard *sb)
{
	memset(sb, 0, sizeof(*sb));
}

static void
sb_recount(struct utcp_scoreboard *sb)
{
	sb->sacked = 0;
	for (unsigned i = 0; i < sb->n; i++)
		sb->sacked += sb->blk[i].end - sb->blk[i].start;
}

uint32_t
utcp_sb_update(struct utcp_scoreboard *sb, const struct utcp_sack_block *b,
	unsigned n, uint32_t snd_una, uint32_t snd_max)
{
	struct utcp_sack_block tmp[UTCP_SACK_BLOCKS + 4];
	uint32_t before = sb->sacked;
	unsigned m = sb->n, out = 0;

	memcpy(tmp, sb->blk, sb->n * sizeof(tmp[0]));
	for (unsigned i = 0; i < n && i < 4; i++) {
		uint32_t s = b[i].start, e = b[i].end;

		if (utcp_seq_lt(s, snd_una))
			s = snd_una;
		/* D-SACK, stale or bogus blocks carry nothing for us */
		if (!utcp_seq_lt(s, e) || utcp_seq_gt(e, snd_max))
			continue;
		tmp[m].start = s;
		tmp[m].end = e;
		m++;
	}
	/* insertion sort by offset from snd_una, then merge */
	for (unsigned i = 1; i < m; i++) {
		struct utcp_sack_block x = tmp[i];
		unsigned j = i;

		while (j > 0 && tmp[j - 1].start - snd_una > x.start - snd_una) {
			tmp[j] = tmp[j - 1];
			j--;
		}
		tmp[j] = x;
	}
	for (unsigned i = 0; i < m; i++) {
		if (out > 0 && tmp[i].start - snd_una <= tmp[out - 1].end - snd_una) {
			if (tmp[i].end - snd_una > tmp[out - 1].end - snd_una)
				tmp[out - 1].end = tmp[i].end;
			continue;
		}
		tmp[out++] = tmp[i];
	}
	if (out > UTCP_SACK_BLOCKS)
		out = UTCP_SACK_BLOCKS;
	memcpy(sb->blk, tmp, out * sizeof(tmp[0]));
	sb->n = (uint8_t)out;
	sb_recount(sb);
	return sb->sacked > before ? sb->sacked - before : 0;
}

void
utcp_sb_ack(struct utcp_scoreboard *sb, uint32_t snd_una)
{
	unsigned out = 0;

	for (unsigned i = 0; i < sb->n; i++) {
		struct utcp_sack_block x = sb->blk[i];

		if (utcp_seq_le(x.end, snd_una))
			continue;
		if (utcp_seq_lt(x.start, snd_una))
			x.start = snd_una;
		sb->blk[out++] = x;
	}
	sb->n = (uint8_t)out;
	sb_recount(sb);
	if (utcp_seq_lt(sb->high_rxt, snd_una))
		sb->high_rxt = snd_una;
}

bool
utcp_sb_is_sacked(const struct utcp_scoreboard *sb, uint32_t seq, uint32_t *end)
{
	for (unsigned i = 0; i < sb->n; i++) {
		if (utcp_seq_in(seq, sb->blk[i].start, sb->blk[i].end)) {
			if (end != NULL)
				*end = sb->blk[i].end;
			return true;
		}
	}
	return false;
}

/* RFC 6675 IsLost: DupThresh ranges or more than (DupThresh-1)*SMSS above. */
bool
utcp_sb_is_lost(const struct utcp_scoreboard *sb, uint32_t seq, uint32_t mss)
{
	uint32_t bytes = 0, blocks = 0;

	for (unsigned i = 0; i < sb->n; i++) {
		const struct utcp_sack_block *x = &sb->blk[i];

		if (utcp_seq_le(x->end, seq))
			continue;
		blocks++;
		bytes += utcp_seq_gt(x->start, seq) ? x->end - x->start : x->end - seq;
	}
	return blocks >= UTCP_DUPTHRESH || bytes > (UTCP_DUPTHRESH - 1) * mss;
}

/* SACKed bytes below seq. */
uint32_t
utcp_sb_sacked_below(const struct utcp_scoreboard *sb, uint32_t seq)
{
	uint32_t n = 0;

	for (unsigned i = 0; i < sb->n && utcp_seq_lt(sb->blk[i].start, seq); i++)
		n += utcp_seq_min(sb->blk[i].end, seq) - sb->blk[i].start;
	return n;
}

/* The start of the first SACKed range above seq, or seq if there is none. */
uint32_t
utcp_sb_next_start(const struct utcp_scoreboard *sb, uint32_t seq)
{
	for (unsigned i = 0; i < sb->n; i++)
		if (utcp_seq_gt(sb->blk[i].start, seq))
			return sb->blk[i].start;
	return seq;
}

uint32_t
utcp_sb_high(const struct utcp_scoreboard *sb)
{
	return sb->n ? sb->blk[sb->n - 1].end : 0;
}

/* RFC 6675 NextSeg rule 1: the first lost, unsacked, not yet resent hole. */
bool
utcp_sb_next_seg(const struct utcp_scoreboard *sb, uint32_t snd_una,
	uint32_t mss, uint32_t *seq, uint32_t *len)
{
	uint32_t cur = utcp_seq_max(snd_una, sb->high_rxt);

	for (unsigned i = 0; i < sb->n; i++) {
		const struct utcp_sack_block *x = &sb->blk[i];

		if (utcp_seq_lt(cur, x->start)) {
			if (!utcp_sb_is_lost(sb, cur, mss))
				return false;
			*seq = cur;
			*len = x->start - cur < mss ? x->start - cur : mss;
			return true;
		}
		cur = utcp_seq_max(cur, x->end);
	}
	return false;
}

/* RFC 6675 SetPipe, computed per hole rather than per octet. */
uint32_t
utcp_sb_pipe(const struct utcp_scoreboard *sb, uint32_t snd_una,
	uint32_t snd_max, uint32_t mss)
{
	uint32_t pipe = 0, cur = snd_una;
	uint32_t rxt = utcp_seq_max(sb->high_rxt, snd_una);

	for (unsigned i = 0; i <= sb->n; i++) {
		uint32_t hs = cur, he = i < sb->n ? sb->blk[i].start : snd_max;

		if (utcp_seq_lt(hs, he)) {
			if (i == sb->n || !utcp_sb_is_lost(sb, hs, mss))
				pipe += he - hs;
			/* retransmitted octets of the hole */
			if (utcp_seq_lt(hs, rxt))
				pipe += utcp_seq_min(he, rxt) - hs;
		}
		if (i < sb->n)
			cur = utcp_seq_max(cur, sb->blk[i].end);
	}
	return pipe;
}
