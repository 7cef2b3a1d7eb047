/*
 * Bounce classification rules: parsed once at start (ctl_bounce_load_*),
 * then matched per reply (ctl_bounce_classify) in the order they were
 * loaded. A rule holds its class, a code pattern (three characters, 'x' any
 * digit), an enhanced-code pattern (three components, "*" any) and an
 * optional compiled regular expression. See ctl_bounce.h for the format.
 */
#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_bounce.h"

struct rule {
	enum ctl_bounce_class cls;
	char code[4];		/* "5xx"; "" = any */
	char esc[3][8];		/* components; "" = any; all "" and any_esc = any */
	int any_esc;
	int has_re;
	regex_t re;
};

struct ctl_bounce {
	struct rule *r;
	unsigned n, cap;
};

static const char *const class_names[CTL_BC_LAST] = {
	"invalid_recipient", "bad_domain", "mailbox_full", "message_too_big",
	"policy_related", "spam_related", "reputation", "auth_failure",
	"tls_required", "rate_limited", "greylisted", "other",
};

const char *
ctl_bounce_class_name(enum ctl_bounce_class c)
{
	return (unsigned)c < CTL_BC_LAST ? class_names[c] : "?";
}

int
ctl_bounce_class_parse(const char *name, enum ctl_bounce_class *out)
{
	for (unsigned i = 0; name != NULL && i < CTL_BC_LAST; i++) {
		if (strcmp(name, class_names[i]) == 0) {
			*out = (enum ctl_bounce_class)i;
			return 0;
		}
	}
	return -EINVAL;
}

int
ctl_bounce_class_is_address(enum ctl_bounce_class c)
{
	return c == CTL_BC_INVALID_RECIPIENT || c == CTL_BC_BAD_DOMAIN;
}

struct ctl_bounce *
ctl_bounce_new(void)
{
	return calloc(1, sizeof(struct ctl_bounce));
}

unsigned
ctl_bounce_count(const struct ctl_bounce *b)
{
	return b->n;
}

static void
rule_fini(struct rule *r)
{
	if (r->has_re)
		regfree(&r->re);
}

void
ctl_bounce_free(struct ctl_bounce *b)
{
	if (b == NULL)
		return;
	for (unsigned i = 0; i < b->n; i++)
		rule_fini(&b->r[i]);
	free(b->r);
	free(b);
}

/* "550", "5xx", "*": @return 0 or -EINVAL */
static int
parse_code(const char *w, struct rule *r)
{
	if (strcmp(w, "*") == 0) {
		r->code[0] = '\0';
		return 0;
	}
	if (strlen(w) != 3 || (w[0] != '4' && w[0] != '5' && w[0] != 'x'))
		return -EINVAL;
	for (int i = 1; i < 3; i++)
		if (!isdigit((unsigned char)w[i]) && w[i] != 'x')
			return -EINVAL;
	memcpy(r->code, w, 4);
	return 0;
}

/* "5.7.26", "5.7.*", "*": @return 0 or -EINVAL */
static int
parse_esc(const char *w, struct rule *r)
{
	const char *p = w;

	if (strcmp(w, "*") == 0) {
		r->any_esc = 1;
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		size_t n = strcspn(p, ".");

		if (n == 0 || n >= sizeof(r->esc[i]) || (i < 2 && p[n] != '.') || (i == 2 && p[n] != '\0'))
			return -EINVAL;
		if (!(n == 1 && p[0] == '*')) {
			for (size_t k = 0; k < n; k++)
				if (!isdigit((unsigned char)p[k]))
					return -EINVAL;
			memcpy(r->esc[i], p, n);
			r->esc[i][n] = '\0';
		}
		p += n + (i < 2);
	}
	if (r->esc[0][0] != '\0' && strcmp(r->esc[0], "4") != 0 && strcmp(r->esc[0], "5") != 0 &&
	    strcmp(r->esc[0], "2") != 0)
		return -EINVAL;
	return 0;
}

/* Next whitespace-separated word of *pp into w; @return its length. */
static size_t
word(const char **pp, char *w, size_t cap)
{
	const char *p = *pp;
	size_t n = 0;

	while (*p == ' ' || *p == '\t')
		p++;
	while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n') {
		if (n + 1 < cap)
			w[n] = *p;
		n++;
		p++;
	}
	w[n < cap ? n : cap - 1] = '\0';
	*pp = p;
	return n;
}

static int
parse_line(const char *line, struct rule *r, char *why, size_t whylen)
{
	char w[64];
	const char *p = line;
	char re[1024];
	size_t n;
	int rc;

	memset(r, 0, sizeof(*r));
	if (word(&p, w, sizeof(w)) >= sizeof(w) || ctl_bounce_class_parse(w, &r->cls) < 0) {
		snprintf(why, whylen, "unknown class '%.40s'", w);
		return -EINVAL;
	}
	if (word(&p, w, sizeof(w)) == 0 || parse_code(w, r) < 0) {
		snprintf(why, whylen, "bad code pattern '%.40s' (550, 5xx, 55x or *)", w);
		return -EINVAL;
	}
	if (word(&p, w, sizeof(w)) == 0 || parse_esc(w, r) < 0) {
		snprintf(why, whylen, "bad enhanced code pattern '%.40s' (5.7.26, 5.7.* or *)", w);
		return -EINVAL;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	n = strcspn(p, "\n");
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
		n--;
	if (n == 0) {
		snprintf(why, whylen, "no text pattern (a regular expression, or *)");
		return -EINVAL;
	}
	if (n >= sizeof(re)) {
		snprintf(why, whylen, "text pattern longer than %zu characters", sizeof(re) - 1);
		return -EINVAL;
	}
	memcpy(re, p, n);
	re[n] = '\0';
	if (strcmp(re, "*") == 0)
		return 0;
	rc = regcomp(&r->re, re, REG_EXTENDED | REG_ICASE | REG_NOSUB);
	if (rc != 0) {
		char e[128];

		regerror(rc, &r->re, e, sizeof(e));
		snprintf(why, whylen, "bad regular expression: %s", e);
		return -EINVAL;
	}
	r->has_re = 1;
	return 0;
}

int
ctl_bounce_load_text(struct ctl_bounce *b, const char *text, const char *name,
	char *err, size_t errlen)
{
	unsigned first = b->n, lineno = 0;
	const char *p = text;

	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n'), *q = p;
		char why[192];
		struct rule r;

		lineno++;
		while (*q == ' ' || *q == '\t')
			q++;
		if (*q != '#' && *q != '\n' && *q != '\r' && *q != '\0') {
			if (parse_line(q, &r, why, sizeof(why)) < 0) {
				snprintf(err, errlen, "%s:%u: %s", name, lineno, why);
				goto undo;
			}
			if (b->n == b->cap) {
				unsigned cap = b->cap ? b->cap * 2 : 64;
				struct rule *nr = realloc(b->r, cap * sizeof(*nr));

				if (nr == NULL) {
					rule_fini(&r);
					snprintf(err, errlen, "%s: out of memory", name);
					for (unsigned i = first; i < b->n; i++)
						rule_fini(&b->r[i]);
					b->n = first;
					return -ENOMEM;
				}
				b->r = nr;
				b->cap = cap;
			}
			b->r[b->n++] = r;
		}
		p = nl != NULL ? nl + 1 : NULL;
	}
	return (int)(b->n - first);
undo:
	for (unsigned i = first; i < b->n; i++)
		rule_fini(&b->r[i]);
	b->n = first;
	return -EINVAL;
}

int
ctl_bounce_load_file(struct ctl_bounce *b, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (f == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	{
		FILE *m = open_memstream(&buf, &len);
		char chunk[4096];
		size_t n;

		if (m == NULL) {
			fclose(f);
			snprintf(err, errlen, "%s: out of memory", path);
			return -ENOMEM;
		}
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			fwrite(chunk, 1, n, m);
		rc = ferror(f) ? -EIO : 0;
		fclose(m);
	}
	fclose(f);
	if (rc == 0 && memchr(buf, '\0', len) != NULL)
		rc = -EINVAL;
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", path, rc == -EIO ? "read error" : "holds a NUL byte");
	else
		rc = ctl_bounce_load_text(b, buf, path, err, errlen);
	free(buf);
	return rc;
}

static int
code_match(const char *pat, int code)
{
	char c[8];

	if (pat[0] == '\0')
		return 1;
	if (code < 100 || code > 999)
		return 0;
	snprintf(c, sizeof(c), "%d", code);
	for (int i = 0; i < 3; i++)
		if (pat[i] != 'x' && pat[i] != c[i])
			return 0;
	return 1;
}

static int
esc_match(const struct rule *r, const char *esc)
{
	const char *p = esc;

	if (r->any_esc)
		return 1;
	if (esc == NULL || esc[0] == '\0')
		return 0;
	for (int i = 0; i < 3; i++) {
		size_t n = strcspn(p, ".");

		if (n == 0)
			return 0;
		if (r->esc[i][0] != '\0' && (strlen(r->esc[i]) != n || memcmp(r->esc[i], p, n) != 0))
			return 0;
		if (i < 2 && p[n] != '.')
			return 0;
		p += n + (i < 2);
	}
	return 1;
}

enum ctl_bounce_class
ctl_bounce_classify(const struct ctl_bounce *b, int code, const char *esc, const char *text)
{
	for (unsigned i = 0; b != NULL && i < b->n; i++) {
		const struct rule *r = &b->r[i];

		if (!code_match(r->code, code) || !esc_match(r, esc))
			continue;
		if (r->has_re && regexec(&r->re, text != NULL ? text : "", 0, NULL, 0) != 0)
			continue;
		return r->cls;
	}
	return CTL_BC_OTHER;
}
