/*
 * Configuration file reader (see ctl_conf.h). The file is parsed once into
 * a flat array of items in file order; lookups are linear, which is fine
 * for a few hundred keys read once at start-up. Each item remembers its
 * line for messages and whether a module asked for it, so that a typo in
 * a key is reported instead of silently ignored.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ctl_conf.h"
#include "mp_log.h"

#define CONF_LINE_MAX 4096

struct conf_item {
	char *section;
	char *key;
	char *value;
	unsigned line;
	int used;
};

struct ctl_conf {
	char *name;                     /* file name for messages */
	struct conf_item *items;
	size_t n, cap;
};

struct ctl_conf *
ctl_conf_new(void)
{
	struct ctl_conf *cf = calloc(1, sizeof(*cf));

	if (cf == NULL)
		return NULL;
	cf->name = strdup("(command line)");
	if (cf->name == NULL) {
		free(cf);
		return NULL;
	}
	return cf;
}

void
ctl_conf_free(struct ctl_conf *cf)
{
	if (cf == NULL)
		return;
	for (size_t i = 0; i < cf->n; i++) {
		free(cf->items[i].section);
		free(cf->items[i].key);
		free(cf->items[i].value);
	}
	free(cf->items);
	free(cf->name);
	free(cf);
}

static struct conf_item *
conf_find(const struct ctl_conf *cf, const char *section, const char *key)
{
	for (size_t i = 0; i < cf->n; i++)
		if (strcmp(cf->items[i].section, section) == 0 &&
		    strcmp(cf->items[i].key, key) == 0)
			return &cf->items[i];
	return NULL;
}

static int
conf_add(struct ctl_conf *cf, const char *section, const char *key,
	const char *value, unsigned line)
{
	struct conf_item *it;

	if (cf->n == cf->cap) {
		size_t cap = cf->cap ? cf->cap * 2 : 32;
		struct conf_item *p = realloc(cf->items, cap * sizeof(*p));

		if (p == NULL)
			return -ENOMEM;
		cf->items = p;
		cf->cap = cap;
	}
	it = &cf->items[cf->n];
	it->section = strdup(section);
	it->key = strdup(key);
	it->value = strdup(value);
	it->line = line;
	it->used = 0;
	if (it->section == NULL || it->key == NULL || it->value == NULL) {
		free(it->section);
		free(it->key);
		free(it->value);
		return -ENOMEM;
	}
	cf->n++;
	return 0;
}

int
ctl_conf_set(struct ctl_conf *cf, const char *section, const char *key,
	const char *value)
{
	struct conf_item *it = conf_find(cf, section, key);
	char *v;

	if (it == NULL)
		return conf_add(cf, section, key, value, 0);
	v = strdup(value);
	if (v == NULL)
		return -ENOMEM;
	free(it->value);
	it->value = v;
	it->line = 0;
	return 0;
}

int
ctl_conf_set_arg(struct ctl_conf *cf, const char *arg, char *err, size_t errlen)
{
	const char *dot = strchr(arg, '.');
	const char *eq = strchr(arg, '=');
	char section[128], key[256];

	if (dot == NULL || eq == NULL || dot > eq || dot == arg || eq == dot + 1 ||
	    (size_t)(dot - arg) >= sizeof(section) ||
	    (size_t)(eq - dot - 1) >= sizeof(key)) {
		mp_errf(err, errlen, "--set %s: expected section.key=value", arg);
		return -EINVAL;
	}
	memcpy(section, arg, (size_t)(dot - arg));
	section[dot - arg] = '\0';
	memcpy(key, dot + 1, (size_t)(eq - dot - 1));
	key[eq - dot - 1] = '\0';
	return ctl_conf_set(cf, section, key, eq + 1);
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	    e[-1] == '\n'))
		*--e = '\0';
	return s;
}

static int
valid_name(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("_-.*", *s) == NULL)
			return 0;
	return 1;
}

/* Parse one line into cf; @section holds the current section. */
static int
parse_line(struct ctl_conf *cf, char *line, unsigned lno, char *section,
	size_t seclen, char *err, size_t errlen)
{
	char *s = trim(line), *eq, *key, *val;
	size_t vlen;

	if (*s == '\0' || *s == '#' || *s == ';')
		return 0;
	if (*s == '[') {
		char *end = strchr(s, ']');

		if (end == NULL || end[1] != '\0') {
			mp_errf(err, errlen, "%s:%u: bad section header", cf->name, lno);
			return -EINVAL;
		}
		*end = '\0';
		s = trim(s + 1);
		if (!valid_name(s) || strlen(s) >= seclen) {
			mp_errf(err, errlen, "%s:%u: bad section name \"%s\"", cf->name, lno, s);
			return -EINVAL;
		}
		snprintf(section, seclen, "%s", s);
		return 0;
	}
	eq = strchr(s, '=');
	if (eq == NULL) {
		mp_errf(err, errlen, "%s:%u: expected key = value", cf->name, lno);
		return -EINVAL;
	}
	if (section[0] == '\0') {
		mp_errf(err, errlen, "%s:%u: key outside any [section]", cf->name, lno);
		return -EINVAL;
	}
	*eq = '\0';
	key = trim(s);
	val = trim(eq + 1);
	if (!valid_name(key)) {
		mp_errf(err, errlen, "%s:%u: [%s] bad key \"%s\"", cf->name, lno, section, key);
		return -EINVAL;
	}
	vlen = strlen(val);
	if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
		val[vlen - 1] = '\0';
		val++;
	}
	if (conf_find(cf, section, key) != NULL) {
		mp_errf(err, errlen, "%s:%u: [%s] %s: set twice", cf->name, lno, section, key);
		return -EINVAL;
	}
	if (conf_add(cf, section, key, val, lno) != 0) {
		mp_errf(err, errlen, "%s: out of memory", cf->name);
		return -ENOMEM;
	}
	return 0;
}

struct ctl_conf *
ctl_conf_parse(const char *text, const char *name, char *err, size_t errlen)
{
	struct ctl_conf *cf = ctl_conf_new();
	char section[128] = "", line[CONF_LINE_MAX + 2];
	const char *p = text;
	unsigned lno = 0;

	if (cf == NULL) {
		mp_errf(err, errlen, "out of memory");
		return NULL;
	}
	free(cf->name);
	cf->name = strdup(name != NULL ? name : "(config)");
	if (cf->name == NULL) {
		ctl_conf_free(cf);
		mp_errf(err, errlen, "out of memory");
		return NULL;
	}
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);

		lno++;
		if (len > CONF_LINE_MAX) {
			mp_errf(err, errlen, "%s:%u: line longer than %d bytes", cf->name,
				lno, CONF_LINE_MAX);
			ctl_conf_free(cf);
			return NULL;
		}
		memcpy(line, p, len);
		line[len] = '\0';
		if (parse_line(cf, line, lno, section, sizeof(section), err, errlen) != 0) {
			ctl_conf_free(cf);
			return NULL;
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	return cf;
}

struct ctl_conf *
ctl_conf_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	struct ctl_conf *cf;
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL) {
		mp_errf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - len < 4096) {
			char *nb;

			if (cap >= (1u << 24)) {
				mp_errf(err, errlen, "%s: larger than 16 MiB", path);
				goto fail;
			}
			cap = cap ? cap * 2 : 8192;
			nb = realloc(buf, cap + 1);
			if (nb == NULL) {
				mp_errf(err, errlen, "%s: out of memory", path);
				goto fail;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		mp_errf(err, errlen, "%s: read error", path);
		goto fail;
	}
	fclose(f);
	buf[len] = '\0';
	if (strlen(buf) != len) {
		mp_errf(err, errlen, "%s: contains a NUL byte", path);
		free(buf);
		return NULL;
	}
	cf = ctl_conf_parse(buf, path, err, errlen);
	free(buf);
	return cf;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

char *
ctl_conf_where(struct ctl_conf *cf, const char *section, const char *key,
	char *buf, size_t len)
{
	struct conf_item *it = conf_find(cf, section, key);

	if (it != NULL && it->line > 0)
		snprintf(buf, len, "%s:%u: [%s] %s: ", cf->name, it->line, section, key);
	else
		snprintf(buf, len, "[%s] %s: ", section, key);
	return buf;
}

const char *
ctl_conf_get(struct ctl_conf *cf, const char *section, const char *key)
{
	struct conf_item *it = conf_find(cf, section, key);

	if (it == NULL)
		return NULL;
	it->used = 1;
	return it->value;
}

const char *
ctl_conf_get_str(struct ctl_conf *cf, const char *section, const char *key,
	const char *def)
{
	const char *v = ctl_conf_get(cf, section, key);

	return v != NULL ? v : def;
}

static int
parse_u64(const char *s, int ms, uint64_t *out)
{
	static const struct { const char *sfx; uint64_t mul; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
		{ "d", 86400000 },
	};
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p != '\0') {
		size_t i;

		if (!ms)
			return -EINVAL;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strcmp(p, units[i].sfx) == 0)
				break;
		if (i == sizeof(units) / sizeof(units[0]))
			return -EINVAL;
		mul = units[i].mul;
	}
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

static int
get_num(struct ctl_conf *cf, const char *section, const char *key, int ms,
	uint64_t min, uint64_t max, uint64_t def, uint64_t *out, char *err,
	size_t errlen)
{
	const char *v = ctl_conf_get(cf, section, key);
	char where[512];
	uint64_t x;

	if (v == NULL) {
		*out = def;
		return 0;
	}
	if (parse_u64(v, ms, &x) != 0) {
		mp_errf(err, errlen, "%s\"%s\" is not %s", ctl_conf_where(cf, section,
			key, where, sizeof(where)), v,
			ms ? "a duration (e.g. 500ms, 30s, 5m, 2h, 7d)" : "an unsigned integer");
		return -EINVAL;
	}
	if (x < min || x > max) {
		mp_errf(err, errlen, "%s%s out of range [%" PRIu64 ", %" PRIu64 "]%s",
			ctl_conf_where(cf, section, key, where, sizeof(where)), v,
			min, max, ms ? " ms" : "");
		return -EINVAL;
	}
	*out = x;
	return 0;
}

int
ctl_conf_get_uint(struct ctl_conf *cf, const char *section, const char *key,
	uint64_t min, uint64_t max, uint64_t def, uint64_t *out, char *err,
	size_t errlen)
{
	return get_num(cf, section, key, 0, min, max, def, out, err, errlen);
}

int
ctl_conf_get_ms(struct ctl_conf *cf, const char *section, const char *key,
	uint64_t min, uint64_t max, uint64_t def, uint64_t *out, char *err,
	size_t errlen)
{
	return get_num(cf, section, key, 1, min, max, def, out, err, errlen);
}

int
ctl_conf_get_bool(struct ctl_conf *cf, const char *section, const char *key,
	int def, int *out, char *err, size_t errlen)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	const char *v = ctl_conf_get(cf, section, key);
	char where[512];

	if (v == NULL) {
		*out = def;
		return 0;
	}
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	mp_errf(err, errlen, "%s\"%s\" is not yes or no",
		ctl_conf_where(cf, section, key, where, sizeof(where)), v);
	return -EINVAL;
}

int
ctl_conf_get_enum(struct ctl_conf *cf, const char *section, const char *key,
	const char *const *names, int def, int *out, char *err, size_t errlen)
{
	const char *v = ctl_conf_get(cf, section, key);
	char where[512], list[512];
	size_t off = 0;

	if (v == NULL) {
		*out = def;
		return 0;
	}
	for (int i = 0; names[i] != NULL; i++)
		if (strcasecmp(v, names[i]) == 0) {
			*out = i;
			return 0;
		}
	list[0] = '\0';
	for (int i = 0; names[i] != NULL && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
			i ? ", " : "", names[i]);
	mp_errf(err, errlen, "%s\"%s\" is not one of: %s",
		ctl_conf_where(cf, section, key, where, sizeof(where)), v, list);
	return -EINVAL;
}

int
ctl_conf_each(struct ctl_conf *cf, const char *section,
	int (*fn)(void *arg, const struct ctl_conf_item *it), void *arg)
{
	for (size_t i = 0; i < cf->n; i++) {
		struct conf_item *c = &cf->items[i];
		struct ctl_conf_item it;
		int r;

		if (strcmp(c->section, section) != 0)
			continue;
		c->used = 1;
		it.section = c->section;
		it.key = c->key;
		it.value = c->value;
		it.line = c->line;
		r = fn(arg, &it);
		if (r != 0)
			return r;
	}
	return 0;
}

int
ctl_conf_check_unused(const struct ctl_conf *cf, char *err, size_t errlen)
{
	for (size_t i = 0; i < cf->n; i++) {
		const struct conf_item *c = &cf->items[i];

		if (c->used)
			continue;
		if (c->line > 0)
			mp_errf(err, errlen, "%s:%u: [%s] %s: unknown key", cf->name,
				c->line, c->section, c->key);
		else
			mp_errf(err, errlen, "[%s] %s: unknown key", c->section, c->key);
		return -ENOENT;
	}
	return 0;
}
