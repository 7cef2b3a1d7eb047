/*
 * Poison jobs entries (README "Dead letters"). The jobs stream is a public
 * contract: anyone may XADD to it, so an entry may name no campaign, an
 * unknown one, hold no recipients, or rcpts that are not JSON at all
 * (a syntax error, invalid UTF-8, a \u0000). ctl_sched marks such an entry
 * with ctl_poison_mark(); ctl_poison_salvage() finds the recipients it
 * still names so that each is failed with the entry's reason instead of
 * staying queued, and the entry itself goes to the jobs:dead stream
 * (ctl_results.c, job_dead.lua) instead of being acknowledged.
 *
 * Salvage reads rcpts as JSON that may hold NULs first; when even that
 * fails, it scans the text for "to":"..." values without escapes. What it
 * finds is only a candidate: the finalise script leaves an address that
 * is not in the campaign's rcpt hash alone.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl_sched_int.h"

#define SALVAGE_MAX 1000	/* recipients looked for in one poison entry */

void
ctl_poison_mark(struct sbatch *b, const char *why)
{
	if (b->dead != NULL)
		return;		/* the first reason found is the one reported */
	b->dead = strdup(why);
	if (b->dead == NULL)
		abort();	/* the entry must not be acked as a good one */
}

static int
seen(const struct sbatch *b, const char *a, size_t n)
{
	for (unsigned i = 0; i < b->n; i++) {
		if (strlen(b->r[i].addr) == n && memcmp(b->r[i].addr, a, n) == 0)
			return 1;
	}
	return 0;
}

static void
add(struct sbatch *b, const char *a, size_t n)
{
	struct srcpt *r;

	if (n == 0 || n >= CTL_ADDR_MAX || memchr(a, '\0', n) != NULL ||
	    b->n == SALVAGE_MAX || seen(b, a, n))
		return;
	r = &b->r[b->n];
	memset(r, 0, sizeof(*r));
	r->addr = strndup(a, n);
	if (r->addr == NULL)
		return;
	r->b = b;
	r->state = SR_SETTLING;
	b->n++;
}

/* "to" : "value" with no escape in value; @return the end of what was read */
static const char *
scan_to(struct sbatch *b, const char *p)
{
	const char *v, *e;

	p += 4;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p != ':')
		return p;
	p++;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p != '"')
		return p;
	v = ++p;
	for (e = v; *e != '\0' && *e != '"' && *e != '\\' && (unsigned char)*e >= 0x20; e++)
		;
	if (*e == '"')
		add(b, v, (size_t)(e - v));
	return e;
}

unsigned
ctl_poison_salvage(struct sbatch *b, const char *rcpts)
{
	json_t *arr;

	for (unsigned i = 0; i < b->n; i++) {
		free(b->r[i].addr);
		json_decref(b->r[i].fields);
	}
	free(b->r);
	b->n = 0;
	b->r = calloc(SALVAGE_MAX, sizeof(*b->r));
	if (b->r == NULL || rcpts == NULL)
		return 0;
	arr = json_loads(rcpts, JSON_ALLOW_NUL, NULL);
	if (json_is_array(arr)) {
		size_t i;
		json_t *e;

		json_array_foreach(arr, i, e) {
			json_t *to = json_object_get(e, "to");

			if (json_is_string(to))
				add(b, json_string_value(to), json_string_length(to));
		}
	} else {
		for (const char *p = strstr(rcpts, "\"to\""); p != NULL; p = strstr(p, "\"to\""))
			p = scan_to(b, p);
	}
	json_decref(arr);
	return b->n;
}
