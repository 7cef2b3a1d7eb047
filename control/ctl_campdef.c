/*
 * Campaign definitions: assembling (JSON file, then command-line
 * settings on top), validating (addresses through msg_addr_valid, the
 * templates through msg_template_compile), and running the three Lua
 * scripts that move a campaign through its states in Redis: create,
 * finish, control (control/lua/campaign_*.lua).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_campdef.h"
#include "ctl_dkim.h"
#include "ctl_lua.h"

#define TEMPLATE_FILE_MAX (8u << 20)

#define ERR(...) do { \
	if (errlen) snprintf(err, errlen, __VA_ARGS__); \
} while (0)

void
ctl_campdef_init(struct ctl_campdef *c)
{
	memset(c, 0, sizeof(*c));
	c->max_age_s = CTL_MAX_AGE_DEFAULT;
	c->retention_s = CTL_RETENTION_DEFAULT;
}

void
ctl_campdef_fini(struct ctl_campdef *c)
{
	free(c->from);
	free(c->from_name);
	free(c->reply_to);
	free(c->return_path);
	free(c->dkim_domain);
	free(c->subject);
	free(c->text);
	free(c->html);
	free(c->unsub);
	free(c->fb_subject);
	free(c->fb_text);
	free(c->fb_html);
	json_decref(c->headers);
	json_decref(c->tls_overrides);
	memset(c, 0, sizeof(*c));
}

int
ctl_tls_policy_valid(const char *s)
{
	return s && (strcmp(s, "none") == 0 || strcmp(s, "opportunistic") == 0 ||
		strcmp(s, "required") == 0 || strcmp(s, "verify") == 0);
}

int
ctl_campdef_id_valid(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		char ch = s[n];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return n >= 1 && n <= CTL_ID_MAX;
}

static int
read_file(const char *path, char **out, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ERR("%s: %s", path, strerror(errno));
		return -ENOENT;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (size_t)st.st_size > TEMPLATE_FILE_MAX) {
		ERR("%s: not a regular file of at most %u MiB", path,
			TEMPLATE_FILE_MAX >> 20);
		close(fd);
		return -EINVAL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		ERR("out of memory");
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	if (memchr(buf, '\0', got)) {
		ERR("%s: contains a NUL byte", path);
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	return 0;
}

static int
set_str(char **dst, const char *v, char *err, size_t errlen)
{
	char *d = strdup(v);

	if (d == NULL) {
		ERR("out of memory");
		return -ENOMEM;
	}
	free(*dst);
	*dst = d;
	return 0;
}

int
ctl_campdef_set(struct ctl_campdef *c, const char *key, const char *v,
	char *err, size_t errlen)
{
	char *buf = NULL;
	int rc;

	if (strcmp(key, "id") == 0) {
		if (!ctl_campdef_id_valid(v)) {
			ERR("campaign: id '%s': use 1 to %d of A-Z a-z 0-9 . _ -", v, CTL_ID_MAX);
			return -EINVAL;
		}
		snprintf(c->id, sizeof(c->id), "%s", v);
		return 0;
	}
	if (strcmp(key, "from") == 0)
		return set_str(&c->from, v, err, errlen);
	if (strcmp(key, "from_name") == 0)
		return set_str(&c->from_name, v, err, errlen);
	if (strcmp(key, "reply_to") == 0)
		return set_str(&c->reply_to, v, err, errlen);
	if (strcmp(key, "return_path") == 0)
		return set_str(&c->return_path, v, err, errlen);
	if (strcmp(key, "dkim_domain") == 0)
		return set_str(&c->dkim_domain, v, err, errlen);
	if (strcmp(key, "verp") == 0) {
		if (strcmp(v, "1") != 0 && strcmp(v, "0") != 0 && strcmp(v, "true") != 0 &&
		    strcmp(v, "false") != 0 && v[0] != '\0') {
			ERR("campaign: verp '%s': expected true or false", v);
			return -EINVAL;
		}
		c->verp = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
		return 0;
	}
	if (strcmp(key, "subject") == 0)
		return set_str(&c->subject, v, err, errlen);
	if (strcmp(key, "text") == 0)
		return set_str(&c->text, v, err, errlen);
	if (strcmp(key, "html") == 0)
		return set_str(&c->html, v, err, errlen);
	if (strcmp(key, "unsubscribe") == 0)
		return set_str(&c->unsub, v, err, errlen);
	if (strcmp(key, "fallback_subject") == 0)
		return set_str(&c->fb_subject, v, err, errlen);
	if (strcmp(key, "fallback_text") == 0)
		return set_str(&c->fb_text, v, err, errlen);
	if (strcmp(key, "fallback_html") == 0)
		return set_str(&c->fb_html, v, err, errlen);
	if (strcmp(key, "fallback_text_file") == 0 || strcmp(key, "fallback_html_file") == 0) {
		rc = read_file(v, &buf, err, errlen);
		if (rc < 0)
			return rc;
		if (key[9] == 't') {
			free(c->fb_text);
			c->fb_text = buf;
		} else {
			free(c->fb_html);
			c->fb_html = buf;
		}
		return 0;
	}
	if (strcmp(key, "fallback_tls_policy") == 0) {
		if (strcmp(v, "none") != 0 && strcmp(v, "opportunistic") != 0) {
			ERR("campaign: fallback_tls_policy '%s': expected none or opportunistic "
				"(the fallback is for domains that cannot do more)", v);
			return -EINVAL;
		}
		snprintf(c->fb_policy, sizeof(c->fb_policy), "%s", v);
		return 0;
	}
	if (strcmp(key, "text_file") == 0 || strcmp(key, "html_file") == 0) {
		rc = read_file(v, &buf, err, errlen);
		if (rc < 0)
			return rc;
		if (key[0] == 't') {
			free(c->text);
			c->text = buf;
		} else {
			free(c->html);
			c->html = buf;
		}
		return 0;
	}
	if (strcmp(key, "tls_policy") == 0) {
		if (!ctl_tls_policy_valid(v)) {
			ERR("campaign: tls_policy '%s': expected none, opportunistic, required or verify", v);
			return -EINVAL;
		}
		snprintf(c->tls_policy, sizeof(c->tls_policy), "%s", v);
		return 0;
	}
	if (strcmp(key, "window") == 0) {
		if (strlen(v) >= sizeof(c->window)) {
			ERR("campaign: window '%s': expected HH:MM-HH:MM", v);
			return -EINVAL;
		}
		snprintf(c->window, sizeof(c->window), "%s", v);
		return 0;
	}
	if (strcmp(key, "priority") == 0) {
		if (ctl_prio_parse(v) == CTL_PRIO_LAST || strlen(v) >= sizeof(c->priority)) {
			ERR("campaign: priority '%s': expected transactional, normal or bulk", v);
			return -EINVAL;
		}
		snprintf(c->priority, sizeof(c->priority), "%s", v);
		return 0;
	}
	if (strcmp(key, "max_age_s") == 0) {
		char *end;
		long long n = strtoll(v, &end, 10);

		if (end == v || *end || n <= 0 || n > 10LL * 365 * 86400) {
			ERR("campaign: max_age_s '%s': expected seconds > 0", v);
			return -EINVAL;
		}
		c->max_age_s = n;
		return 0;
	}
	if (strcmp(key, "retention_s") == 0) {
		/* seconds, or a number with s, m, h or d */
		char *end;
		long long n = strtoll(v, &end, 10), unit = 1;

		if (end != v && *end && end[1] == '\0') {
			unit = *end == 'd' ? 86400 : *end == 'h' ? 3600 : *end == 'm' ? 60 :
				*end == 's' ? 1 : 0;
			end += unit != 0;
		}
		if (end == v || *end || n < 0 || n > 10LL * 365 * 86400 / (unit ? unit : 1)) {
			ERR("campaign: retention '%s': expected seconds (or Nd, Nh, Nm), 0 = keep for ever, at most 10 years", v);
			return -EINVAL;
		}
		c->retention_s = n * unit;
		return 0;
	}
	ERR("campaign: unknown setting '%s'", key);
	return -EINVAL;
}

int
ctl_campdef_add_header(struct ctl_campdef *c, const char *line, char *err,
	size_t errlen)
{
	const char *colon = strchr(line, ':');
	char name[MSG_MAX_HNAME + 1];
	size_t n;

	if (colon == NULL || colon == line || (size_t)(colon - line) > MSG_MAX_HNAME) {
		ERR("campaign: header '%s': expected 'Name: value'", line);
		return -EINVAL;
	}
	n = (size_t)(colon - line);
	memcpy(name, line, n);
	name[n] = '\0';
	colon++;
	while (*colon == ' ' || *colon == '\t')
		colon++;
	if (c->headers == NULL && (c->headers = json_object()) == NULL)
		return -ENOMEM;
	if (json_object_set_new(c->headers, name, json_string(colon)) < 0) {
		ERR("campaign: header '%s': value is not UTF-8", name);
		return -EINVAL;
	}
	return 0;
}

int
ctl_campdef_add_tls_override(struct ctl_campdef *c, const char *spec,
	char *err, size_t errlen)
{
	const char *eq = strchr(spec, '=');
	char dom[256];
	size_t n;

	if (eq == NULL || eq == spec || (size_t)(eq - spec) >= sizeof(dom) ||
	    !ctl_tls_policy_valid(eq + 1)) {
		ERR("campaign: tls override '%s': expected domain=none|opportunistic|required|verify", spec);
		return -EINVAL;
	}
	n = (size_t)(eq - spec);
	for (size_t i = 0; i < n; i++)
		dom[i] = (char)((spec[i] >= 'A' && spec[i] <= 'Z') ? spec[i] + 32 : spec[i]);
	dom[n] = '\0';
	if (c->tls_overrides == NULL && (c->tls_overrides = json_object()) == NULL)
		return -ENOMEM;
	json_object_set_new(c->tls_overrides, dom, json_string(eq + 1));
	return 0;
}

int
ctl_campdef_load_json(struct ctl_campdef *c, const char *path, char *err,
	size_t errlen)
{
	json_error_t je;
	json_t *root, *v;
	const char *key;
	char *dirbuf, *dir;
	char sub[4096], num[32];
	int rc = 0;

	root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		ERR("%s:%d:%d: %s", path, je.line, je.column, je.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		ERR("%s: expected a JSON object", path);
		json_decref(root);
		return -EINVAL;
	}
	dirbuf = strdup(path);
	if (dirbuf == NULL) {
		json_decref(root);
		return -ENOMEM;
	}
	dir = dirname(dirbuf);
	json_object_foreach(root, key, v) {
		char e2[400];

		if (strcmp(key, "headers") == 0 || strcmp(key, "tls_overrides") == 0) {
			const char *k2;
			json_t *v2;

			if (!json_is_object(v)) {
				ERR("%s: %s: expected an object", path, key);
				rc = -EINVAL;
				break;
			}
			json_object_foreach(v, k2, v2) {
				if (!json_is_string(v2)) {
					ERR("%s: %s.%s: expected a string", path, key, k2);
					rc = -EINVAL;
					break;
				}
				snprintf(sub, sizeof(sub), key[0] == 'h' ? "%s: %s" : "%s=%s",
					k2, json_string_value(v2));
				rc = key[0] == 'h' ?
					ctl_campdef_add_header(c, sub, e2, sizeof(e2)) :
					ctl_campdef_add_tls_override(c, sub, e2, sizeof(e2));
				if (rc < 0) {
					ERR("%s: %s", path, e2);
					break;
				}
			}
			if (rc < 0)
				break;
			continue;
		}
		if (strcmp(key, "verp") == 0 && json_is_boolean(v)) {
			rc = ctl_campdef_set(c, key, json_is_true(v) ? "1" : "0", e2, sizeof(e2));
		} else if ((strcmp(key, "max_age_s") == 0 || strcmp(key, "retention_s") == 0) &&
			   json_is_integer(v)) {
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
			rc = ctl_campdef_set(c, key, num, e2, sizeof(e2));
		} else if (!json_is_string(v)) {
			snprintf(e2, sizeof(e2), "%s: expected a string", key);
			rc = -EINVAL;
		} else if (strcmp(key, "text_file") == 0 || strcmp(key, "html_file") == 0 ||
			   strcmp(key, "fallback_text_file") == 0 ||
			   strcmp(key, "fallback_html_file") == 0) {
			const char *p = json_string_value(v);

			if (p[0] != '/')
				snprintf(sub, sizeof(sub), "%s/%s", dir, p);
			else
				snprintf(sub, sizeof(sub), "%s", p);
			rc = ctl_campdef_set(c, key, sub, e2, sizeof(e2));
		} else {
			rc = ctl_campdef_set(c, key, json_string_value(v), e2, sizeof(e2));
		}
		if (rc < 0) {
			ERR("%s: %s", path, e2);
			break;
		}
	}
	free(dirbuf);
	json_decref(root);
	return rc;
}

static int
window_valid(const char *w)
{
	int h1, m1, h2, m2;
	char tail;

	if (sscanf(w, "%2d:%2d-%2d:%2d%c", &h1, &m1, &h2, &m2, &tail) != 4)
		return 0;
	if (strlen(w) != 11)
		return 0;
	return h1 >= 0 && h1 < 24 && h2 >= 0 && h2 < 24 && m1 >= 0 && m1 < 60 &&
	       m2 >= 0 && m2 < 60 && (h1 != h2 || m1 != m2);
}

void
ctl_campdef_new_id(char *buf, size_t cap)
{
	static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	unsigned long long ms = (unsigned long long)ctl_now_ms();
	unsigned char rnd[4] = { 0 };
	char tmp[32];
	int n = 0;

	do {
		tmp[n++] = b36[ms % 36];
		ms /= 36;
	} while (ms && n < (int)sizeof(tmp));
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		unsigned long long x = (unsigned long long)ctl_mono_ms() ^ (unsigned long long)getpid();

		memcpy(rnd, &x, sizeof(rnd));
	}
	{
		char rev[32];
		int i;

		for (i = 0; i < n; i++)
			rev[i] = tmp[n - 1 - i];
		rev[n] = '\0';
		snprintf(buf, cap, "c%s-%02x%02x%02x%02x", rev, rnd[0], rnd[1], rnd[2], rnd[3]);
	}
}

static int
has(const char *s)
{
	return s != NULL && s[0] != '\0';
}

/*
 * The safe-content fallback: a subject and a body of its own, a policy
 * below what it stands in for, and a main policy (or an override) that
 * can fail for want of TLS. Its template compiles on its own: no custom
 * headers, which may carry merge fields of the main message.
 */
static int
fallback_check(struct ctl_campdef *c, char *err, size_t errlen)
{
	struct msg_template_spec spec;
	struct msg_template *t;
	int strict = strcmp(c->tls_policy, "required") == 0 || strcmp(c->tls_policy, "verify") == 0;
	const char *k;
	json_t *v;
	char e2[400];

	if (!has(c->fb_subject) && !has(c->fb_text) && !has(c->fb_html)) {
		if (c->fb_policy[0]) {
			ERR("campaign: fallback_tls_policy without a fallback template");
			return -EINVAL;
		}
		return 0;
	}
	if (!has(c->fb_subject) || (!has(c->fb_text) && !has(c->fb_html))) {
		ERR("campaign: the fallback needs fallback_subject and fallback_text and/or fallback_html");
		return -EINVAL;
	}
	json_object_foreach(c->tls_overrides, k, v)
		if (strcmp(json_string_value(v), "required") == 0 ||
		    strcmp(json_string_value(v), "verify") == 0)
			strict = 1;
	if (!strict) {
		ERR("campaign: a fallback needs tls_policy required or verify (or an override "
			"that asks for one): nothing else fails for want of TLS");
		return -EINVAL;
	}
	if (c->fb_policy[0] == '\0')
		snprintf(c->fb_policy, sizeof(c->fb_policy), "opportunistic");
	memset(&spec, 0, sizeof(spec));
	spec.campaign_id = c->id;
	spec.from_addr = c->from;
	spec.from_name = has(c->from_name) ? c->from_name : NULL;
	spec.reply_to = has(c->reply_to) ? c->reply_to : NULL;
	spec.subject = c->fb_subject;
	spec.text = has(c->fb_text) ? c->fb_text : NULL;
	spec.html = has(c->fb_html) ? c->fb_html : NULL;
	spec.unsub_url = has(c->unsub) ? c->unsub : NULL;
	t = msg_template_compile(&spec, e2, sizeof(e2));
	if (t == NULL) {
		ERR("campaign: fallback: %s", e2);
		return -EINVAL;
	}
	msg_template_free(t);
	return 0;
}

int
ctl_campdef_validate(struct ctl_campdef *c, struct msg_template **tpl,
	char *err, size_t errlen)
{
	struct msg_template_spec spec;
	struct msg_header *hdrs = NULL;
	size_t nh = 0;
	char e2[400];
	const char *k;
	json_t *v;

	*tpl = NULL;
	if (c->id[0] == '\0')
		ctl_campdef_new_id(c->id, sizeof(c->id));
	if (c->from == NULL || c->from[0] == '\0') {
		ERR("campaign: from: sender address required");
		return -EINVAL;
	}
	if (msg_addr_valid(c->from, MSG_F_SMTPUTF8) < 0) {
		ERR("campaign: from: bad address syntax '%.200s'", c->from);
		return -EINVAL;
	}
	if (c->reply_to && c->reply_to[0] && msg_addr_valid(c->reply_to, MSG_F_SMTPUTF8) < 0) {
		ERR("campaign: reply_to: bad address syntax '%.200s'", c->reply_to);
		return -EINVAL;
	}
	if (c->return_path && c->return_path[0] &&
	    (msg_addr_valid(c->return_path, MSG_F_SMTPUTF8) < 0 ||
	     c->return_path[0] == '"' || strchr(c->return_path, '=') != NULL)) {
		ERR("campaign: return_path: bad address '%.200s' (a dot-atom mailbox, no '=')",
			c->return_path);
		return -EINVAL;
	}
	if (c->dkim_domain && c->dkim_domain[0] && !ctl_dkim_domain_ok(c->dkim_domain)) {
		ERR("campaign: dkim_domain: '%.200s' is not a domain name", c->dkim_domain);
		return -EINVAL;
	}
	if (c->subject == NULL || c->subject[0] == '\0') {
		ERR("campaign: subject required");
		return -EINVAL;
	}
	if ((c->text == NULL || c->text[0] == '\0') && (c->html == NULL || c->html[0] == '\0')) {
		ERR("campaign: a text and/or an html template is required");
		return -EINVAL;
	}
	if (c->tls_policy[0] == '\0')
		snprintf(c->tls_policy, sizeof(c->tls_policy), "opportunistic");
	if (c->window[0] && !window_valid(c->window)) {
		ERR("campaign: window '%s': expected HH:MM-HH:MM (UTC, start != end)", c->window);
		return -EINVAL;
	}
	if (c->tls_overrides) {
		json_object_foreach(c->tls_overrides, k, v) {
			char probe[300];

			snprintf(probe, sizeof(probe), "x@%s", k);
			if (strlen(k) > 253 || msg_addr_valid(probe, MSG_F_SMTPUTF8) < 0 ||
			    k[0] == '[') {
				ERR("campaign: tls override: '%s' is not a domain name", k);
				return -EINVAL;
			}
		}
	}
	if (c->headers && json_object_size(c->headers) > 0) {
		nh = json_object_size(c->headers);
		if (nh > MSG_MAX_HEADERS) {
			ERR("campaign: %zu extra headers, at most %d", nh, MSG_MAX_HEADERS);
			return -EINVAL;
		}
		hdrs = calloc(nh, sizeof(*hdrs));
		if (hdrs == NULL)
			return -ENOMEM;
		nh = 0;
		json_object_foreach(c->headers, k, v) {
			hdrs[nh].name = k;
			hdrs[nh].value = json_string_value(v);
			nh++;
		}
	}
	if (fallback_check(c, err, errlen) < 0) {
		free(hdrs);
		return -EINVAL;
	}
	memset(&spec, 0, sizeof(spec));
	spec.campaign_id = c->id;
	spec.from_addr = c->from;
	spec.from_name = c->from_name && c->from_name[0] ? c->from_name : NULL;
	spec.reply_to = c->reply_to && c->reply_to[0] ? c->reply_to : NULL;
	spec.subject = c->subject;
	spec.text = c->text && c->text[0] ? c->text : NULL;
	spec.html = c->html && c->html[0] ? c->html : NULL;
	spec.headers = hdrs;
	spec.nheaders = nh;
	spec.unsub_url = c->unsub && c->unsub[0] ? c->unsub : NULL;
	*tpl = msg_template_compile(&spec, e2, sizeof(e2));
	free(hdrs);
	if (*tpl == NULL) {
		ERR("campaign: %s", e2);
		return -EINVAL;
	}
	return 0;
}

static struct ctl_redis_script create_lua = { .src = ctl_lua_campaign_create };

static char *
json_str_or_empty(json_t *o)
{
	if (o == NULL || json_object_size(o) == 0)
		return strdup("{}");
	return json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
}

static const char *
nz(const char *s)
{
	return s ? s : "";
}

int
ctl_campdef_create(struct ctl_redis *r, const struct ctl_campdef *c,
	int64_t now_ms, char *err, size_t errlen)
{
	char kc[CTL_KEY_MAX], kz[CTL_KEY_MAX], kn[CTL_KEY_MAX], kj[CTL_KEY_MAX], ka[CTL_KEY_MAX];
	char created[24], maxage[24], retain[24];
	char *hdrs = json_str_or_empty(c->headers);
	char *ovr = json_str_or_empty(c->tls_overrides);
	const char *argv[96];
	redisReply *rep;
	int n = 0, rc = 0;

	if (hdrs == NULL || ovr == NULL) {
		free(hdrs);
		free(ovr);
		ERR("out of memory");
		return -ENOMEM;
	}
	ctl_redis_key(r, kc, sizeof(kc), CTL_K_CAMPAIGN, c->id);
	ctl_redis_key(r, kz, sizeof(kz), CTL_K_CAMPAIGNS);
	ctl_redis_key(r, kn, sizeof(kn), CTL_K_COUNTS, c->id);
	ctl_redis_key(r, kj, sizeof(kj), CTL_K_CJOBS, c->id);
	ctl_redis_key(r, ka, sizeof(ka), CTL_K_ACTIVE);
	snprintf(created, sizeof(created), "%lld", (long long)now_ms);
	snprintf(maxage, sizeof(maxage), "%lld", c->max_age_s);
	snprintf(retain, sizeof(retain), "%lld", c->retention_s);
#define KV(k, v) do { argv[n++] = (k); argv[n++] = nz(v); } while (0)
	argv[n++] = kc;
	argv[n++] = kz;
	argv[n++] = kn;
	argv[n++] = kj;
	argv[n++] = ka;
	argv[n++] = c->id;
	argv[n++] = created;
	argv[n++] = CTL_GROUP;
	KV(CTL_F_ID, c->id);
	KV(CTL_F_FROM, c->from);
	KV(CTL_F_FROM_NAME, c->from_name);
	KV(CTL_F_REPLY_TO, c->reply_to);
	KV(CTL_F_RETURN_PATH, c->return_path);
	KV(CTL_F_VERP, c->verp ? "1" : "0");
	KV(CTL_F_DKIM_DOMAIN, c->dkim_domain);
	KV(CTL_F_SUBJECT, c->subject);
	KV(CTL_F_TEXT, c->text);
	KV(CTL_F_HTML, c->html);
	KV(CTL_F_HEADERS, hdrs);
	KV(CTL_F_UNSUB, c->unsub);
	KV(CTL_F_TLS_POLICY, c->tls_policy);
	KV(CTL_F_TLS_OVERRIDES, ovr);
	KV(CTL_F_FB_SUBJECT, c->fb_subject);
	KV(CTL_F_FB_TEXT, c->fb_text);
	KV(CTL_F_FB_HTML, c->fb_html);
	KV(CTL_F_FB_POLICY, c->fb_policy);
	KV(CTL_F_WINDOW, c->window);
	KV(CTL_F_PRIORITY, c->priority[0] ? c->priority : "normal");
	KV(CTL_F_MAX_AGE, maxage);
	KV(CTL_F_RETENTION, retain);
	KV(CTL_F_STATE, "submitting");
	KV(CTL_F_CREATED, created);
	KV(CTL_F_TOTAL, "0");
	KV(CTL_F_INVALID, "0");
	KV(CTL_F_DUPS, "0");
	KV(CTL_F_SUPPRESSED, "0");
#undef KV
	rep = ctl_redis_eval(r, &create_lua, 5, n, argv, NULL);
	free(hdrs);
	free(ovr);
	if (rep == NULL) {
		ERR("%s", ctl_redis_error(r));
		return -EIO;
	}
	if (rep->type == REDIS_REPLY_ERROR) {
		ERR("redis %s: %s", ctl_redis_where(r), rep->str);
		rc = -EIO;
	} else if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 0) {
		ERR("campaign '%s' already exists", c->id);
		rc = -EEXIST;
	}
	freeReplyObject(rep);
	return rc;
}

static struct ctl_redis_script finish_lua = { .src = ctl_lua_campaign_finish };

int
ctl_campdef_finish(struct ctl_redis *r, const char *id, long long invalid_delta,
	char *state, size_t cap, char *err, size_t errlen)
{
	char kc[CTL_KEY_MAX], kn[CTL_KEY_MAX], kr[CTL_KEY_MAX], kj[CTL_KEY_MAX], now[24], inv[24];
	const char *argv[6];
	redisReply *rep;
	int rc = 0;

	ctl_redis_key(r, kc, sizeof(kc), CTL_K_CAMPAIGN, id);
	ctl_redis_key(r, kn, sizeof(kn), CTL_K_COUNTS, id);
	ctl_redis_key(r, kr, sizeof(kr), CTL_K_RCPT, id);
	ctl_redis_key(r, kj, sizeof(kj), CTL_K_CJOBS, id);
	snprintf(now, sizeof(now), "%lld", (long long)ctl_now_ms());
	snprintf(inv, sizeof(inv), "%lld", invalid_delta);
	argv[0] = kc;
	argv[1] = kn;
	argv[2] = kr;
	argv[3] = kj;
	argv[4] = now;
	argv[5] = inv;
	rep = ctl_redis_eval(r, &finish_lua, 4, 6, argv, NULL);
	if (rep == NULL) {
		ERR("%s", ctl_redis_error(r));
		return -EIO;
	}
	if (rep->type == REDIS_REPLY_STRING) {
		snprintf(state, cap, "%s", rep->str);
	} else if (rep->type == REDIS_REPLY_NIL) {
		ERR("campaign '%s' vanished from redis during submission", id);
		rc = -ENOENT;
	} else {
		ERR("redis %s: %s", ctl_redis_where(r),
			rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		rc = -EIO;
	}
	freeReplyObject(rep);
	return rc;
}

static struct ctl_redis_script control_lua = { .src = ctl_lua_campaign_control };

static int control_eval(struct ctl_redis *r, const char *id, const char *action,
	const char *field, const char *value, char *old, char *neu, size_t cap,
	char *err, size_t errlen);

int
ctl_campdef_control(struct ctl_redis *r, const char *id, const char *action,
	char *old_state, char *new_state, size_t cap, char *err, size_t errlen)
{
	return control_eval(r, id, action, NULL, NULL, old_state, new_state, cap, err, errlen);
}

int
ctl_campdef_update(struct ctl_redis *r, const char *id, const char *field, const char *value,
	char *old_value, char *new_value, size_t cap, char *err, size_t errlen)
{
	char v[sizeof(((struct ctl_campdef *)0)->window)];

	if (strcmp(field, "priority") == 0) {
		if (ctl_prio_parse(value) == CTL_PRIO_LAST) {
			ERR("priority '%.40s': expected transactional, normal or bulk", value);
			return -EINVAL;
		}
	} else if (strcmp(field, "window") == 0) {
		if (strcmp(value, "none") == 0 || value[0] == '\0') {
			value = "";
		} else if (strlen(value) >= sizeof(v) || !window_valid(value)) {
			ERR("window '%.40s': expected HH:MM-HH:MM (UTC, start != end) or none", value);
			return -EINVAL;
		}
	} else {
		ERR("cannot set '%.40s' (priority or window)", field);
		return -EINVAL;
	}
	return control_eval(r, id, "set", field, value, old_value, new_value, cap, err, errlen);
}

static int
control_eval(struct ctl_redis *r, const char *id, const char *action,
	const char *field, const char *value, char *old_state, char *new_state, size_t cap,
	char *err, size_t errlen)
{
	char kc[CTL_KEY_MAX], kn[CTL_KEY_MAX], kr[CTL_KEY_MAX], kj[CTL_KEY_MAX], now[24];
	const char *argv[8];
	redisReply *rep;
	int rc = 0;

	if (!ctl_campdef_id_valid(id)) {
		ERR("unknown campaign '%.80s' (not a valid campaign id)", id);
		return -ENOENT;
	}
	ctl_redis_key(r, kc, sizeof(kc), CTL_K_CAMPAIGN, id);
	ctl_redis_key(r, kn, sizeof(kn), CTL_K_COUNTS, id);
	snprintf(now, sizeof(now), "%lld", (long long)ctl_now_ms());
	ctl_redis_key(r, kr, sizeof(kr), CTL_K_RCPT, id);
	ctl_redis_key(r, kj, sizeof(kj), CTL_K_CJOBS, id);
	argv[0] = kc;
	argv[1] = kn;
	argv[2] = kr;
	argv[3] = kj;
	argv[4] = action;
	argv[5] = now;
	argv[6] = field ? field : "";
	argv[7] = value ? value : "";
	rep = ctl_redis_eval(r, &control_lua, 4, field ? 8 : 6, argv, NULL);
	if (rep == NULL) {
		ERR("%s", ctl_redis_error(r));
		return -EIO;
	}
	/* Redis 7 prefixes script error replies without a code with "ERR " */
	if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "ERR ", 4) == 0)
		memmove(rep->str, rep->str + 4, strlen(rep->str + 4) + 1);
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
	    rep->element[0]->type == REDIS_REPLY_STRING &&
	    rep->element[1]->type == REDIS_REPLY_STRING) {
		snprintf(old_state, cap, "%s", rep->element[0]->str);
		snprintf(new_state, cap, "%s", rep->element[1]->str);
	} else if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOCAMPAIGN", 10) == 0) {
		ERR("unknown campaign '%s' (no %s in redis %s)", id, kc, ctl_redis_where(r));
		rc = -ENOENT;
	} else if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "REFUSED ", 8) == 0) {
		ERR("cannot %s%s%s%s campaign '%s': %s", action, field ? " the " : "",
			field ? field : "", field ? " of" : "", id, rep->str + 8);
		rc = -EPERM;
	} else {
		ERR("redis %s: %s", ctl_redis_where(r),
			rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
		rc = -EIO;
	}
	freeReplyObject(rep);
	return rc;
}

int
ctl_campdef_exists(struct ctl_redis *r, const char *id)
{
	char kc[CTL_KEY_MAX];
	redisReply *rep;
	int rc;

	if (!ctl_campdef_id_valid(id))
		return 0;
	ctl_redis_key(r, kc, sizeof(kc), CTL_K_CAMPAIGN, id);
	rep = ctl_redis_cmd(r, "EXISTS %s", kc);
	if (rep == NULL)
		return -EIO;
	rc = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
	freeReplyObject(rep);
	return rc;
}

int
ctl_campdef_load_redis(struct ctl_redis *r, const char *id, struct ctl_campdef *c,
	char *state, size_t cap, int *submitted, char *err, size_t errlen)
{
	static const char *const strs[] = {
		"from", "from_name", "reply_to", "subject", "text", "html",
		"unsubscribe", "tls_policy", "window", "priority", "max_age_s", "retention_s", "return_path",
		"verp", "dkim_domain", "fallback_subject", "fallback_text", "fallback_html",
		"fallback_tls_policy",
	};
	char kc[CTL_KEY_MAX], e2[400];
	const char *v;
	redisReply *h;
	size_t i;
	int rc = 0;

	if (!ctl_campdef_id_valid(id)) {
		ERR("unknown campaign '%.80s' (not a valid campaign id)", id);
		return -ENOENT;
	}
	ctl_redis_key(r, kc, sizeof(kc), CTL_K_CAMPAIGN, id);
	h = ctl_redis_cmd(r, "HGETALL %s", kc);
	if (h == NULL || h->type != REDIS_REPLY_ARRAY) {
		ERR("%s", h == NULL ? ctl_redis_error(r) :
			h->type == REDIS_REPLY_ERROR ? h->str : "HGETALL: unexpected reply");
		if (h)
			freeReplyObject(h);
		return -EIO;
	}
	if (h->elements == 0) {
		freeReplyObject(h);
		ERR("unknown campaign '%s' (no %s in redis %s)", id, kc, ctl_redis_where(r));
		return -ENOENT;
	}
	snprintf(c->id, sizeof(c->id), "%s", id);
	for (i = 0; i < sizeof(strs) / sizeof(strs[0]) && rc == 0; i++) {
		v = ctl_redis_hget(h, strs[i]);
		if (v && v[0])
			rc = ctl_campdef_set(c, strs[i], v, e2, sizeof(e2));
	}
	for (i = 0; i < 2 && rc == 0; i++) {
		const char *f = i == 0 ? CTL_F_HEADERS : CTL_F_TLS_OVERRIDES;
		json_t *o = NULL;

		v = ctl_redis_hget(h, f);
		if (v && v[0]) {
			o = json_loads(v, 0, NULL);
			if (!json_is_object(o)) {
				json_decref(o);
				snprintf(e2, sizeof(e2), "stored %s is not a JSON object", f);
				rc = -EINVAL;
				break;
			}
		}
		if (i == 0)
			c->headers = o;
		else
			c->tls_overrides = o;
	}
	v = ctl_redis_hget(h, CTL_F_STATE);
	snprintf(state, cap, "%s", v ? v : "");
	v = ctl_redis_hget(h, CTL_F_SUBMITTED);
	*submitted = v && v[0];
	freeReplyObject(h);
	if (rc < 0)
		ERR("campaign '%s' in redis: %s", id, e2);
	return rc;
}
