/*
 * Suppression entries and address normalisation (ctl_suppress.h). Every
 * writer of NS suppress:<domain> (mailpumpctl, the finalise script, an
 * application's unsubscribe endpoint) must produce the same field for an
 * address, so the rule is one function: trim, check, lower-case ASCII.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl_suppress.h"
#include "msg.h"

static const char *const reason_names[CTL_SUP_LAST] = {
	[CTL_SUP_BOUNCE] = "bounce",
	[CTL_SUP_UNSUBSCRIBE] = "unsubscribe",
	[CTL_SUP_COMPLAINT] = "complaint",
	[CTL_SUP_MANUAL] = "manual",
};

const char *
ctl_suppress_reason_name(enum ctl_suppress_reason r)
{
	return r < CTL_SUP_LAST ? reason_names[r] : "?";
}

int
ctl_suppress_reason_parse(const char *name, enum ctl_suppress_reason *out)
{
	for (int i = 0; i < CTL_SUP_LAST; i++) {
		if (name != NULL && strcmp(name, reason_names[i]) == 0) {
			*out = (enum ctl_suppress_reason)i;
			return 0;
		}
	}
	return -EINVAL;
}

static void
lower_ascii(char *p)
{
	for (; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
}

int
ctl_suppress_addr(const char *addr, size_t len, char *out, size_t cap)
{
	while (len > 0 && (*addr == ' ' || *addr == '\t')) {
		addr++;
		len--;
	}
	while (len > 0 && (addr[len - 1] == ' ' || addr[len - 1] == '\t' ||
	       addr[len - 1] == '\r' || addr[len - 1] == '\n'))
		len--;
	if (len == 0 || len >= cap || memchr(addr, '\0', len) != NULL)
		return -EINVAL;
	memcpy(out, addr, len);
	out[len] = '\0';
	if (msg_addr_valid(out, MSG_F_SMTPUTF8) < 0)
		return -EINVAL;
	lower_ascii(out);
	return 0;
}

int
ctl_suppress_domain(const char *dom_or_from, char *out, size_t cap)
{
	const char *at = strrchr(dom_or_from, '@');
	const char *d = at != NULL ? at + 1 : dom_or_from;
	char probe[300];

	if (d[0] == '\0' || strlen(d) >= cap ||
	    (size_t)snprintf(probe, sizeof(probe), "x@%s", d) >= sizeof(probe) ||
	    msg_addr_valid(probe, MSG_F_SMTPUTF8) < 0)
		return -EINVAL;
	snprintf(out, cap, "%s", d);
	lower_ascii(out);
	return 0;
}

char *
ctl_suppress_entry(const char *reason, const char *source, int64_t ts_ms,
	const char *campaign, const char *text)
{
	json_t *o = json_pack("{s:s, s:s, s:I}", "reason", reason,
		"source", source ? source : "", "ts_ms", (json_int_t)ts_ms);
	char *txt;

	if (o == NULL)
		return NULL;
	if (campaign != NULL && campaign[0] != '\0')
		json_object_set_new(o, "campaign", json_string(campaign));
	if (text != NULL && text[0] != '\0') {
		json_t *t = json_string(text);

		/* a reply that is not UTF-8 keeps the entry, loses the text */
		if (t != NULL)
			json_object_set_new(o, "text", t);
	}
	txt = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return txt;
}

void
ctl_suppress_describe(const char *entry, char *out, size_t cap)
{
	json_t *j = json_loads(entry, 0, NULL);
	const char *r = json_string_value(json_object_get(j, "reason"));
	const char *src = json_string_value(json_object_get(j, "source"));

	if (src != NULL && src[0] != '\0')
		snprintf(out, cap, "suppressed: %.40s (source %.100s)", r ? r : "unknown", src);
	else
		snprintf(out, cap, "suppressed: %.40s", r ? r : "unknown");
	json_decref(j);
}
