/*
 * mailpumpctl: the operator's tool over the Redis contract. Commands:
 * submit (campaign definition + streamed recipients), status, watch,
 * report tls|campaign, pause, resume, cancel, list, suppress
 * add|remove|list|import (per sender domain), dkim-record (the TXT record
 * of a [dkim] key; reads the daemon configuration, not Redis). Reports
 * only read Redis. Every command prints a human form or, with --json, one JSON
 * document (watch: one JSON line per interval) on stdout; errors go to
 * stderr. Exit status: 0 ok, 1 usage or input error (or a refused state
 * change), 2 Redis unreachable or failing, 3 unknown campaign id (or
 * DKIM domain or selector),
 * 4 watch --timeout reached.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_campdef.h"
#include "ctl_conf.h"
#include "ctl_dkim.h"
#include "ctl_input.h"
#include "ctl_redis.h"
#include "ctl_report.h"
#include "ctl_submit.h"
#include "ctl_suppress.h"

#define EX_OK       0
#define EX_USAGE    1
#define EX_REDIS    2
#define EX_UNKNOWN  3
#define EX_TIMEOUT  4

#define ERRS_IN_JSON 1000   /* errors listed in submit --json output */

static const char usage_text[] =
"usage: mailpumpctl [--redis URL] [--ns PREFIX] [--json] COMMAND ...\n"
"\n"
"  submit [campaign options] [--format csv|jsonl] [--strict] RECIPIENTS|-\n"
"      campaign options: --campaign FILE.json --id ID --from ADDR\n"
"        --from-name NAME --reply-to ADDR --subject TEMPLATE --text FILE\n"
"        --html FILE --header 'Name: value' (repeatable) --unsubscribe URL\n"
"        --tls none|opportunistic|required|verify\n"
"        --tls-override DOMAIN=POLICY (repeatable) --window HH:MM-HH:MM\n"
"        --max-age SECONDS --return-path ADDR (MAIL FROM; default --from)\n"
"        --retention SECONDS|Nd|Nh (its keys expire that long after done\n"
"        or cancelled; default 30d, 0 = never; export before then)\n"
"        --priority transactional|normal|bulk (intake share 8:4:1;\n"
"        default normal)\n"
"        --dkim-domain DOMAIN (DKIM d=; default the --from domain)\n"
"        --verp (per-recipient return path: LOCAL+rlocal=rdomain@DOMAIN)\n"
"        --fallback-subject TEMPLATE --fallback-text FILE --fallback-html FILE\n"
"        --fallback-tls none|opportunistic (default opportunistic): the\n"
"        safe-content message sent instead where a domain cannot meet a\n"
"        required/verify policy (recorded delivered_fallback)\n"
"      --append ID: resume an interrupted submission of campaign ID with\n"
"        the same (or remaining) recipients; already queued ones are skipped\n"
"      --batch N (recipients per job, default 100) --quiet (no per-line\n"
"      messages) --max-errors N (stop printing after N line messages)\n"
"  status ID\n"
"  watch ID [--interval SECONDS] [--timeout SECONDS]\n"
"  report tls [--domain DOMAIN] [--top N]\n"
"  report campaign ID [--top N]\n"
"  pause ID | resume ID | cancel ID\n"
"  priority ID transactional|normal|bulk | window ID HH:MM-HH:MM|none\n"
"      change a campaign that is not done; daemons follow within a second\n"
"  list [--limit N]\n"
"  export ID [--format csv|jsonl]   every recipient's result with its TLS\n"
"      proof, streamed to stdout (default csv); before its retention ends\n"
"  suppress add DOMAIN ADDRESS... [--reason R] [--source S]\n"
"  suppress remove DOMAIN ADDRESS... | suppress list DOMAIN\n"
"  suppress import DOMAIN FILE|- [--reason R] [--source S]\n"
"      the suppression list of sender domain DOMAIN; R is bounce,\n"
"      unsubscribe, complaint or manual (default); import takes one\n"
"      address a line or CSV with an email column\n"
"  dkim-record DOMAIN SELECTOR [-c CONF | --key FILE]\n"
"      the DNS TXT record to publish for that key (k=rsa or k=ed25519),\n"
"      read from [dkim] of the daemon configuration CONF (default\n"
"      $MAILPUMP_CONF or /etc/mailpump/mailpump.conf) or from FILE\n"
"  dead-letters [--count N]   newest poison jobs entries (NS jobs:dead),\n"
"      each with its reason and original fields (default 20)\n"
"\n"
"  --redis URL   redis://[user[:password]@]host[:port][/db] or a unix socket\n"
"                path (default $MAILPUMP_REDIS or redis://127.0.0.1:6379/0)\n"
"  --ns PREFIX   key namespace (default $MAILPUMP_NS or mp:)\n"
"  --json        machine-readable output\n"
"Exit: 0 ok, 1 usage/input error, 2 redis error, 3 unknown campaign\n"
"      (dkim-record: unknown domain or selector),\n"
"      4 watch timeout.\n";

struct opts {
	const char *redis;
	const char *ns;
	int json;
	/* submit */
	struct ctl_campdef camp;
	const char *camp_file;
	const char *append;
	int camp_opts;          /* campaign options given */
	enum ctl_input_fmt fmt;
	int strict;
	int quiet;
	long max_errors;
	unsigned batch;
	/* watch / reports */
	double interval;
	double timeout;
	const char *domain;
	int top;
	int limit;
	/* dkim-record */
	const char *conf;
	const char *key_file;
	/* suppress */
	const char *sup_reason;
	const char *sup_source;
	int count;
};

static struct opts o;
static volatile sig_atomic_t stop_flag;

static void
die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mailpumpctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(mailpumpctl --help for usage)\n");
	exit(EX_USAGE);
}

static int
rc_exit(int rc)
{
	if (rc == -ENOENT)
		return EX_UNKNOWN;
	if (rc == -EIO || rc == -ECONNREFUSED || rc == -EAGAIN)
		return EX_REDIS;
	return EX_USAGE;
}

static struct ctl_redis *
connect_redis(void)
{
	struct ctl_redis_conf rc;
	struct ctl_redis *r;
	char err[512];

	memset(&rc, 0, sizeof(rc));
	rc.url = o.redis;
	rc.ns = o.ns;
	r = ctl_redis_open(&rc, err, sizeof(err));
	if (r == NULL) {
		if (strncmp(err, "redis url", 9) == 0 || strncmp(err, "redis namespace", 15) == 0) {
			fprintf(stderr, "mailpumpctl: %s\n", err);
			exit(EX_USAGE);
		}
		fprintf(stderr, "mailpumpctl: cannot reach redis: %s\n", err);
		exit(EX_REDIS);
	}
	return r;
}

static void
print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s) {
		puts(s);
		free(s);
	}
}

static long long
jget_int(json_t *o2, const char *k)
{
	json_t *v = json_object_get(o2, k);

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (long long)json_real_value(v);
	return 0;
}

static const char *
jget_str(json_t *o2, const char *k)
{
	const char *s = json_string_value(json_object_get(o2, k));

	return s ? s : "";
}

static void
fmt_duration(char *buf, size_t cap, double s)
{
	long long t = (long long)(s + 0.5);

	if (t >= 3600)
		snprintf(buf, cap, "%lldh%02lldm", t / 3600, (t / 60) % 60);
	else if (t >= 60)
		snprintf(buf, cap, "%lldm%02llds", t / 60, t % 60);
	else
		snprintf(buf, cap, "%llds", t);
}

static void
fmt_time(char *buf, size_t cap, long long ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0) {
		snprintf(buf, cap, "-");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, cap, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* --- submit --- */

struct submit_ctx {
	long printed;
	json_t *errors;
};

static void
report_line(struct submit_ctx *x, unsigned long line, const char *msg, const char *kind)
{
	if (!o.quiet && (o.max_errors <= 0 || x->printed < o.max_errors)) {
		fprintf(stderr, "%s\n", msg);
		x->printed++;
		if (o.max_errors > 0 && x->printed == o.max_errors)
			fprintf(stderr, "mailpumpctl: --max-errors %ld reached, further line messages not shown\n",
				o.max_errors);
	}
	if (x->errors && json_array_size(x->errors) < ERRS_IN_JSON)
		json_array_append_new(x->errors, json_pack("{s:I s:s s:s}", "line",
			(json_int_t)line, "kind", kind, "error", msg));
}

static void
on_invalid(void *user, unsigned long line, const char *msg)
{
	report_line(user, line, msg, "invalid");
}

static void
on_duplicate(void *user, unsigned long line, const char *addr)
{
	char msg[400];

	snprintf(msg, sizeof(msg), "line %lu: duplicate recipient %s (skipped)", line, addr);
	report_line(user, line, msg, "duplicate");
}

static void
on_suppressed(void *user, unsigned long line, const char *addr)
{
	char msg[400];

	snprintf(msg, sizeof(msg), "line %lu: suppressed recipient %s (skipped)", line, addr);
	report_line(user, line, msg, "suppressed");
}

/* A printable excerpt of an input cell for a line message. */
static void
excerpt_arg(char *dst, size_t cap, const char *s)
{
	size_t o2 = 0;

	for (; *s != '\0' && o2 + 4 < cap; s++)
		dst[o2++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
	if (*s != '\0')
		memcpy(dst + o2, "...", 3), o2 += 3;
	dst[o2] = '\0';
}

/* A seekable descriptor for the recipients (strict mode reads twice). */
static int
open_input(const char *path, int need_seek)
{
	char buf[65536];
	ssize_t n;
	int fd, tmp;

	if (strcmp(path, "-") == 0)
		fd = dup(0);
	else
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "mailpumpctl: %s: %s\n", path, strerror(errno));
		exit(EX_USAGE);
	}
	if (!need_seek || lseek(fd, 0, SEEK_CUR) >= 0)
		return fd;
	/* a pipe: spool it to an unnamed temporary file */
	{
		const char *dir = getenv("TMPDIR");

		tmp = open(dir && *dir ? dir : "/tmp", O_TMPFILE | O_RDWR | O_EXCL, 0600);
	}
	if (tmp < 0) {
		fprintf(stderr, "mailpumpctl: --strict: cannot create a spool file for stdin: %s\n",
			strerror(errno));
		exit(EX_USAGE);
	}
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "mailpumpctl: reading %s: %s\n", path, strerror(errno));
			exit(EX_USAGE);
		}
		if (write(tmp, buf, (size_t)n) != n) {
			fprintf(stderr, "mailpumpctl: --strict: spool file: %s\n", strerror(errno));
			exit(EX_USAGE);
		}
	}
	close(fd);
	lseek(tmp, 0, SEEK_SET);
	return tmp;
}

/* Strict mode, pass 1: every record must be valid. @return 0 or the
 * line of the first error (printed). */
static unsigned long
strict_check(int fd, const struct msg_template *t)
{
	struct ctl_input_rec rec;
	struct ctl_input *in;
	char err[600], addr[320];
	unsigned long n = 0;
	int rc;

	in = ctl_input_open(fd, o.fmt, err, sizeof(err));
	if (in == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	for (;;) {
		char *entry = NULL;

		rc = ctl_input_next(in, &rec, err, sizeof(err));
		if (rc == 0)
			break;
		if (rc == 1) {
			rc = ctl_submit_check(t, &rec, addr, sizeof(addr), &entry, err, sizeof(err));
			free(entry);
			if (rc == 0) {
				n++;
				continue;
			}
		}
		fprintf(stderr, "%s\n", err);
		ctl_input_close(in);
		return rec.line ? rec.line : 1;
	}
	ctl_input_close(in);
	(void)n;
	return 0;
}

/* submit --append ID: resume an interrupted submission. The definition
 * is read back from Redis; already queued recipients come back as
 * duplicates (HSETNX), so nobody gets a second copy. */
static struct ctl_redis *
append_campaign(struct msg_template **tpl)
{
	struct ctl_redis *r = connect_redis();
	char err[600], state[32];
	int submitted = 0, rc;

	rc = ctl_campdef_load_redis(r, o.append, &o.camp, state, sizeof(state), &submitted,
		err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", err);
		exit(rc_exit(rc));
	}
	if (submitted || (strcmp(state, "submitting") != 0 && strcmp(state, "paused") != 0)) {
		fprintf(stderr, "mailpumpctl: submit --append: campaign '%s' is %s%s; only an interrupted submission (state submitting) can be resumed\n",
			o.append, state, submitted ? " and its submission ended" : "");
		exit(EX_USAGE);
	}
	if (ctl_campdef_validate(&o.camp, tpl, err, sizeof(err)) < 0) {
		fprintf(stderr, "mailpumpctl: stored %s\n", err);
		exit(EX_USAGE);
	}
	return r;
}

static int
cmd_submit(int argc, char **argv)
{
	struct ctl_submit_conf sc;
	struct ctl_submit_stats st;
	struct submit_ctx x = { 0 };
	struct msg_template *tpl;
	struct ctl_input_rec rec;
	struct ctl_input *in;
	struct ctl_submit *s;
	struct ctl_redis *r;
	char err[600], state[32] = "", sender[256];
	const char *path;
	int fd, rc = 0, ex = EX_OK;
	int64_t t0 = ctl_mono_ms();

	if (argc != 1)
		die_usage("submit: expected one recipients file (or - for stdin)");
	path = argv[0];
	if (o.append && (o.camp_opts || o.camp_file))
		die_usage("submit --append takes the campaign definition from redis: no campaign options");
	if (o.append) {
		r = append_campaign(&tpl);
		goto have_campaign;
	}
	if (o.camp_file) {
		/* the file is the base: settings given as flags were stored in o.camp
		 * already and must win, so load into a fresh one and merge */
		struct ctl_campdef base;

		ctl_campdef_init(&base);
		if (ctl_campdef_load_json(&base, o.camp_file, err, sizeof(err)) < 0) {
			fprintf(stderr, "mailpumpctl: %s\n", err);
			return EX_USAGE;
		}
#define TAKE(f) do { if (o.camp.f == NULL) { o.camp.f = base.f; base.f = NULL; } } while (0)
		TAKE(from); TAKE(from_name); TAKE(reply_to); TAKE(return_path); TAKE(dkim_domain); TAKE(subject);
		TAKE(text); TAKE(html); TAKE(unsub);
#undef TAKE
		if (o.camp.id[0] == '\0')
			memcpy(o.camp.id, base.id, sizeof(base.id));
		if (o.camp.tls_policy[0] == '\0')
			memcpy(o.camp.tls_policy, base.tls_policy, sizeof(base.tls_policy));
		if (o.camp.window[0] == '\0')
			memcpy(o.camp.window, base.window, sizeof(base.window));
		if (o.camp.priority[0] == '\0')
			memcpy(o.camp.priority, base.priority, sizeof(base.priority));
		if (!o.camp.verp)
			o.camp.verp = base.verp;
		if (o.camp.max_age_s == CTL_MAX_AGE_DEFAULT)
			o.camp.max_age_s = base.max_age_s;
		if (o.camp.retention_s == CTL_RETENTION_DEFAULT)
			o.camp.retention_s = base.retention_s;
		if (base.headers) {
			if (o.camp.headers == NULL)
				o.camp.headers = json_object();
			json_object_update_missing(o.camp.headers, base.headers);
		}
		if (base.tls_overrides) {
			if (o.camp.tls_overrides == NULL)
				o.camp.tls_overrides = json_object();
			json_object_update_missing(o.camp.tls_overrides, base.tls_overrides);
		}
		ctl_campdef_fini(&base);
	}
	if (ctl_campdef_validate(&o.camp, &tpl, err, sizeof(err)) < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", err);
		return EX_USAGE;
	}
	r = connect_redis();
	{
		/* what no daemon will sign is refused under [dkim] mode = required */
		const char *d = o.camp.dkim_domain != NULL && o.camp.dkim_domain[0] != '\0' ?
			o.camp.dkim_domain : strrchr(o.camp.from, '@') + 1;
		int dk = ctl_dkim_submit_check(r, d, err, sizeof(err));

		if (dk == -EPERM || dk == -EIO) {
			fprintf(stderr, "mailpumpctl: campaign %s: %s; nothing was submitted\n",
				o.camp.id[0] ? o.camp.id : "(new)", err);
			msg_template_free(tpl);
			ctl_redis_close(r);
			return dk == -EPERM ? EX_USAGE : EX_REDIS;
		}
		if (dk == 1)
			fprintf(stderr, "mailpumpctl: warning: %s\n", err);
	}
have_campaign:
	fd = open_input(path, o.strict);
	if (o.strict) {
		unsigned long bad = strict_check(fd, tpl);

		if (bad) {
			fprintf(stderr, "mailpumpctl: --strict: aborted at line %lu; nothing was submitted\n", bad);
			msg_template_free(tpl);
			ctl_redis_close(r);
			return EX_USAGE;
		}
		lseek(fd, 0, SEEK_SET);
	}
	in = ctl_input_open(fd, o.fmt, err, sizeof(err));
	if (in == NULL) {
		fprintf(stderr, "%s\nmailpumpctl: nothing was submitted\n", err);
		msg_template_free(tpl);
		ctl_redis_close(r);
		return EX_USAGE;
	}
	rc = o.append ? 0 : ctl_campdef_create(r, &o.camp, ctl_now_ms(), err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", err);
		ctl_input_close(in);
		msg_template_free(tpl);
		ctl_redis_close(r);
		return rc == -EEXIST ? EX_USAGE : EX_REDIS;
	}
	if (o.json)
		x.errors = json_array();
	memset(&sc, 0, sizeof(sc));
	sc.batch_size = o.batch;
	sc.on_invalid = on_invalid;
	sc.on_duplicate = on_duplicate;
	sc.on_suppressed = on_suppressed;
	sc.user = &x;
	/* validated already: a From without a usable domain cannot get here */
	if (ctl_suppress_domain(o.camp.from, sender, sizeof(sender)) == 0)
		sc.sender_domain = sender;
	s = ctl_submit_new(r, o.camp.id, tpl, &sc);
	if (s == NULL) {
		fprintf(stderr, "mailpumpctl: out of memory\n");
		return EX_USAGE;
	}
	for (;;) {
		rc = ctl_input_next(in, &rec, err, sizeof(err));
		if (rc == 0)
			break;
		if (rc == -EINVAL) {
			ctl_submit_count_invalid(s);
			on_invalid(&x, rec.line, err);
			continue;
		}
		if (rc < 0) {
			fprintf(stderr, "mailpumpctl: %s: %s\n", path, err);
			break;
		}
		rc = ctl_submit_add(s, &rec);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = ctl_submit_end(s);
	ctl_submit_get_stats(s, &st);
	if (rc == 0 || rc == -ECANCELED) {
		if (ctl_campdef_finish(r, o.camp.id, ctl_submit_take_invalid(s), state,
		    sizeof(state), err, sizeof(err)) < 0) {
			fprintf(stderr, "mailpumpctl: %s\n", err);
			rc = -EIO;
		}
	}
	if (rc == -ECANCELED) {
		fprintf(stderr, "mailpumpctl: %s; stopped after line %lu\n", ctl_submit_error(s), rec.line);
		ex = EX_USAGE;
	} else if (rc == -ENOENT) {
		fprintf(stderr, "mailpumpctl: %s\n", ctl_submit_error(s));
		ex = EX_USAGE;
	} else if (rc < 0) {
		/* input or Redis failed midway. What is queued stays queued
		 * (and is delivered); the campaign stays "submitting" so it
		 * never reaches done half-submitted. The operator resumes it
		 * (already queued recipients are skipped) or cancels it. */
		if (rc == -ENOMEM)
			fprintf(stderr, "mailpumpctl: submission failed: out of memory\n");
		else if (rc != -EIO || ctl_submit_error(s)[0] != 'n')
			fprintf(stderr, "mailpumpctl: submission failed: %s\n",
				rc == -EIO ? ctl_submit_error(s) : "cannot read the recipients");
		ctl_submit_free(s);
		s = NULL;
		fprintf(stderr, "mailpumpctl: campaign %s is left in state submitting with up to %lu recipients queued; "
			"resume with 'mailpumpctl submit --append %s FILE' (queued recipients are skipped) "
			"or cancel it with 'mailpumpctl cancel %s'\n",
			o.camp.id, st.accepted, o.camp.id, o.camp.id);
		ex = ctl_redis_connected(r) ? EX_USAGE : EX_REDIS;
		if (rc == -EIO && !ctl_redis_connected(r))
			ex = EX_REDIS;
	}
	if (o.json) {
		json_t *j = json_pack("{s:s s:s s:I s:I s:I s:I s:I s:I s:f s:O}",
			"id", o.camp.id, "state", state[0] ? state : "submitting",
			"records", (json_int_t)st.records, "accepted", (json_int_t)st.accepted,
			"invalid", (json_int_t)st.invalid, "duplicates", (json_int_t)st.duplicates,
			"suppressed", (json_int_t)st.suppressed,
			"batches", (json_int_t)st.batches,
			"seconds", (double)(ctl_mono_ms() - t0) / 1000.0,
			"errors", x.errors);
		print_json(j);
		json_decref(j);
	} else {
		printf("%s\n", o.camp.id);
		if (!o.quiet || ex != EX_OK)
			fprintf(stderr, "campaign %s: %lu recipients queued in %lu batches, %lu invalid, %lu duplicates skipped, %lu suppressed (state %s)\n",
				o.camp.id, st.accepted, st.batches, st.invalid, st.duplicates,
				st.suppressed, state[0] ? state : "submitting");
	}
	json_decref(x.errors);
	ctl_submit_free(s);
	ctl_input_close(in);
	close(fd);
	msg_template_free(tpl);
	ctl_redis_close(r);
	return ex;
}

/* --- status / watch --- */

static void
print_status(json_t *j)
{
	json_t *c = json_object_get(j, "counts");
	char created[40], eta[32] = "-";
	json_t *e = json_object_get(j, "eta_s");

	fmt_time(created, sizeof(created), jget_int(j, "created_ms"));
	if (json_is_number(e))
		fmt_duration(eta, sizeof(eta), json_number_value(e));
	printf("campaign   %s\n", jget_str(j, "id"));
	printf("state      %s\n", jget_str(j, "state"));
	printf("priority   %s%s%s\n", jget_str(j, "priority"),
		jget_str(j, "window")[0] ? ", window " : "", jget_str(j, "window"));
	printf("subject    %s\n", jget_str(j, "subject"));
	printf("created    %s\n", created);
	printf("recipients %lld (invalid lines %lld, duplicates skipped %lld, suppressed %lld)\n",
		jget_int(j, "total"), jget_int(j, "invalid"), jget_int(j, "duplicates_skipped"),
		jget_int(j, "suppressed"));
	printf("  queued %lld  deferred %lld  delivered %lld  bounced %lld  failed %lld  cancelled %lld\n",
		jget_int(c, "queued"), jget_int(c, "deferred"), jget_int(c, "delivered"),
		jget_int(c, "bounced"), jget_int(c, "failed"), jget_int(c, "cancelled"));
	if (jget_int(c, "delivered_fallback"))
		printf("  delivered_fallback %lld (the safe-content fallback, not the message)\n",
			jget_int(c, "delivered_fallback"));
	printf("progress   %.1f%% done (%lld of %lld final), %.1f/s average, ETA %s\n",
		json_number_value(json_object_get(j, "percent_done")), jget_int(j, "final"),
		jget_int(j, "total"), json_number_value(json_object_get(j, "rate_per_s")), eta);
	if (jget_int(j, "dup_deliveries"))
		printf("dup final reports %lld\n", jget_int(j, "dup_deliveries"));
	if (jget_int(j, "expires_ms")) {
		char exp[40];

		fmt_time(exp, sizeof(exp), jget_int(j, "expires_ms"));
		printf("expires    %s (retention; mailpumpctl export before)\n", exp);
	}
}

static int
cmd_status(int argc, char **argv)
{
	struct ctl_redis *r;
	char err[512];
	json_t *j;
	int rc;

	if (argc != 1)
		die_usage("status: expected a campaign id");
	r = connect_redis();
	rc = ctl_report_status(r, argv[0], ctl_now_ms(), &j, err, sizeof(err));
	ctl_redis_close(r);
	if (rc < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", err);
		return rc_exit(rc);
	}
	if (o.json)
		print_json(j);
	else
		print_status(j);
	json_decref(j);
	return EX_OK;
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int
cmd_watch(int argc, char **argv)
{
	struct ctl_redis *r;
	int tty = isatty(1);
	int64_t start = ctl_mono_ms(), prev_t = 0;
	long long prev_fin = -1;
	double rate = -1;
	char err[512];
	int ex = EX_OK;

	if (argc != 1)
		die_usage("watch: expected a campaign id");
	if (o.interval <= 0)
		o.interval = 1.0;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	r = connect_redis();
	for (;;) {
		json_t *j;
		char st[32];
		long long fin, total;
		int64_t now = ctl_mono_ms();
		int ended, rc;

		rc = ctl_report_status(r, argv[0], ctl_now_ms(), &j, err, sizeof(err));
		if (rc == -EIO) {
			/* a Redis restart is survivable; a long outage is not */
			if (ctl_redis_wait(r, 10000) == 0)
				rc = ctl_report_status(r, argv[0], ctl_now_ms(), &j, err, sizeof(err));
		}
		if (rc < 0) {
			if (tty && !o.json)
				fputc('\n', stdout);
			fprintf(stderr, "mailpumpctl: %s\n", err);
			ex = rc_exit(rc);
			break;
		}
		snprintf(st, sizeof(st), "%s", jget_str(j, "state"));
		ended = strcmp(st, "done") == 0 || strcmp(st, "cancelled") == 0;
		fin = jget_int(j, "final");
		total = jget_int(j, "total");
		if (prev_fin >= 0 && now > prev_t) {
			double inst = (double)(fin - prev_fin) * 1000.0 / (double)(now - prev_t);

			rate = rate < 0 ? inst : 0.7 * rate + 0.3 * inst;
		}
		prev_fin = fin;
		prev_t = now;
		if (o.json) {
			json_object_set_new(j, "watch_rate_per_s", rate < 0 ? json_null() : json_real(rate));
			{
				char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);

				if (s) {
					puts(s);
					free(s);
				}
			}
		} else {
			json_t *c = json_object_get(j, "counts");
			double pct = json_number_value(json_object_get(j, "percent_done"));
			char eta[32] = "-", bar[41];
			int w = 40, k, filled = (int)(pct / 100.0 * w + 0.5);

			if (rate > 0 && !ended)
				fmt_duration(eta, sizeof(eta), (double)(total - fin) / rate);
			else if (ended)
				snprintf(eta, sizeof(eta), "0s");
			for (k = 0; k < w; k++)
				bar[k] = k < filled ? '#' : '.';
			bar[w] = '\0';
			printf("%s[%s] %5.1f%% %lld/%lld  dlv %lld  fb %lld  dfr %lld  bnc %lld  fail %lld  cncl %lld  %.1f/s  ETA %s  %s%s",
				tty ? "\r\033[K" : "", bar, pct, fin, total,
				jget_int(c, "delivered"), jget_int(c, "delivered_fallback"),
				jget_int(c, "deferred"),
				jget_int(c, "bounced"), jget_int(c, "failed"),
				jget_int(c, "cancelled"), rate < 0 ? 0.0 : rate, eta, st,
				tty ? "" : "\n");
		}
		fflush(stdout);
		json_decref(j);
		if (ended)
			break;
		if (o.timeout > 0 && (double)(ctl_mono_ms() - start) >= o.timeout * 1000.0) {
			if (tty && !o.json)
				fputc('\n', stdout);
			fprintf(stderr, "mailpumpctl: watch: --timeout %.0f s reached, campaign %s is still %s\n",
				o.timeout, argv[0], st[0] ? st : "running");
			ex = EX_TIMEOUT;
			break;
		}
		if (stop_flag) {
			if (tty && !o.json)
				fputc('\n', stdout);
			ex = 130;
			break;
		}
		{
			double left = o.interval;

			if (o.timeout > 0) {
				double rest = o.timeout - (double)(ctl_mono_ms() - start) / 1000.0;

				if (rest < left)
					left = rest > 0 ? rest : 0;
			}
			struct timespec ts = { (time_t)left, (long)((left - floor(left)) * 1e9) };

			nanosleep(&ts, NULL);
		}
		if (stop_flag) {
			if (tty && !o.json)
				fputc('\n', stdout);
			ex = 130;
			break;
		}
	}
	if (tty && !o.json && ex == EX_OK)
		fputc('\n', stdout);
	ctl_redis_close(r);
	return ex;
}

/* --- reports --- */

static void
print_reasons(const char *title, json_t *arr)
{
	size_t i;

	if (json_array_size(arr) == 0)
		return;
	printf("\n%s:\n", title);
	printf("  %8s  %4s  %-7s  %s\n", "COUNT", "CODE", "ESC", "TEXT");
	for (i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i);

		printf("  %8lld  %4lld  %-7s  %s\n", jget_int(e, "count"), jget_int(e, "code"),
			jget_str(e, "esc")[0] ? jget_str(e, "esc") : "-", jget_str(e, "text"));
	}
}

/* Non-deliveries by state and bounce class (README "Bounce classes"). */
static void
print_classes(json_t *classes)
{
	const char *st, *cl;
	json_t *by, *n;

	if (json_object_size(classes) == 0)
		return;
	printf("\nby class:\n");
	json_object_foreach(classes, st, by) {
		json_object_foreach(by, cl, n)
			printf("  %-9s %-18s %8lld\n", st, cl, (long long)json_integer_value(n));
	}
}

static void
join_counts(char *buf, size_t cap, json_t *obj, int max)
{
	const char *k;
	json_t *v;
	size_t n = 0;
	int i = 0;

	buf[0] = '\0';
	json_object_foreach(obj, k, v) {
		int m;

		if (i++ == max) {
			snprintf(buf + n, cap - n, ",...");
			return;
		}
		m = snprintf(buf + n, cap - n, "%s%s=%lld", n ? "," : "", k,
			(long long)json_integer_value(v));
		if (m < 0 || (size_t)m >= cap - n)
			return;
		n += (size_t)m;
	}
	if (n == 0)
		snprintf(buf, cap, "-");
}

static int
cmd_report(int argc, char **argv)
{
	struct ctl_redis *r;
	char err[512];
	json_t *j;
	int rc;

	if (argc < 1)
		die_usage("report: expected 'tls' or 'campaign ID'");
	if (strcmp(argv[0], "tls") == 0) {
		size_t i;
		json_t *t, *d;

		if (argc != 1)
			die_usage("report tls: unexpected argument '%s' (use --domain)", argv[1]);
		r = connect_redis();
		rc = ctl_report_tls(r, o.domain, o.top, &j, err, sizeof(err));
		ctl_redis_close(r);
		if (rc < 0) {
			fprintf(stderr, "mailpumpctl: %s\n", err);
			return rc == -ENOENT ? EX_UNKNOWN : rc_exit(rc);
		}
		if (o.json) {
			print_json(j);
			json_decref(j);
			return EX_OK;
		}
		d = json_object_get(j, "domains");
		printf("%-28s %8s %6s %-22s %-28s %-26s %6s %7s\n", "DOMAIN", "SESSIONS",
			"TLS%", "VERSIONS", "TOP CIPHER", "FAILURES", "PLAIN", "NO-STLS");
		for (i = 0; i < json_array_size(d); i++) {
			json_t *e = json_array_get(d, i);
			char ver[128], fail[160];
			const char *tc = json_string_value(json_object_get(e, "top_cipher"));

			join_counts(ver, sizeof(ver), json_object_get(e, "versions"), 3);
			join_counts(fail, sizeof(fail), json_object_get(e, "failures"), 3);
			if (jget_int(e, "tls_failed") && strcmp(fail, "-") == 0)
				snprintf(fail, sizeof(fail), "tls_failed=%lld", jget_int(e, "tls_failed"));
			printf("%-28s %8lld %5.1f%% %-22s %-28s %-26s %6lld %7lld\n",
				jget_str(e, "domain"), jget_int(e, "sessions"),
				json_number_value(json_object_get(e, "tls_percent")), ver,
				tc ? tc : "-", fail, jget_int(e, "plaintext_deliveries"),
				jget_int(e, "no_starttls"));
		}
		t = json_object_get(j, "totals");
		printf("%lld domains, %lld sessions, %.1f%% TLS, %lld plaintext deliveries, %lld without STARTTLS\n",
			jget_int(t, "domains"), jget_int(t, "sessions"),
			json_number_value(json_object_get(t, "tls_percent")),
			jget_int(t, "plaintext_deliveries"), jget_int(t, "no_starttls"));
		json_decref(j);
		return EX_OK;
	}
	if (strcmp(argv[0], "campaign") == 0) {
		if (argc != 2)
			die_usage("report campaign: expected a campaign id");
		r = connect_redis();
		rc = ctl_report_campaign(r, argv[1], o.top > 0 ? o.top : 10, ctl_now_ms(), &j,
			err, sizeof(err));
		ctl_redis_close(r);
		if (rc < 0) {
			fprintf(stderr, "mailpumpctl: %s\n", err);
			return rc_exit(rc);
		}
		if (o.json) {
			print_json(j);
		} else {
			print_status(j);
			print_classes(json_object_get(j, "classes"));
			print_reasons("top bounce reasons", json_object_get(j, "bounce_reasons"));
			print_reasons("top deferral reasons (last reply of recipients still deferred)",
				json_object_get(j, "deferral_reasons"));
			print_reasons("top failure reasons", json_object_get(j, "failure_reasons"));
		}
		json_decref(j);
		return EX_OK;
	}
	die_usage("report: unknown report '%s' (tls or campaign)", argv[0]);
}

static int
cmd_control(const char *action, int argc, char **argv)
{
	struct ctl_redis *r;
	char err[512], old[32], neu[32];
	int rc;

	if (argc != 1)
		die_usage("%s: expected a campaign id", action);
	r = connect_redis();
	rc = ctl_campdef_control(r, argv[0], action, old, neu, sizeof(old), err, sizeof(err));
	ctl_redis_close(r);
	if (rc < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", err);
		return rc_exit(rc);
	}
	if (o.json) {
		json_t *j = json_pack("{s:s s:s s:s s:b}", "id", argv[0], "old_state", old,
			"state", neu, "changed", strcmp(old, neu) != 0);

		print_json(j);
		json_decref(j);
	} else if (strcmp(old, neu) == 0) {
		printf("campaign %s already %s\n", argv[0], neu);
	} else {
		printf("campaign %s: %s -> %s\n", argv[0], old, neu);
	}
	return EX_OK;
}

static int
cmd_set(const char *field, int argc, char **argv)
{
	struct ctl_redis *r;
	char err[512], old[32], neu[32];
	int rc;

	if (argc != 2)
		die_usage("%s: expected a campaign id and a value", field);
	r = connect_redis();
	rc = ctl_campdef_update(r, argv[0], field, argv[1], old, neu, sizeof(old), err, sizeof(err));
	ctl_redis_close(r);
	if (rc < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", err);
		return rc_exit(rc);
	}
	if (o.json) {
		json_t *j = json_pack("{s:s s:s s:s s:s}", "id", argv[0], "field", field,
			"old", old, "new", neu);

		print_json(j);
		json_decref(j);
	} else {
		printf("campaign %s: %s %s -> %s\n", argv[0], field, old[0] ? old : "none",
			neu[0] ? neu : "none");
	}
	return EX_OK;
}

static int
cmd_list(int argc, char **argv)
{
	struct ctl_redis *r;
	char err[512], when[40];
	json_t *j, *a;
	size_t i;
	int rc;

	(void)argv;
	if (argc != 0)
		die_usage("list: no arguments expected");
	r = connect_redis();
	rc = ctl_report_list(r, o.limit, &j, err, sizeof(err));
	ctl_redis_close(r);
	if (rc < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", err);
		return rc_exit(rc);
	}
	if (o.json) {
		print_json(j);
	} else {
		a = json_object_get(j, "campaigns");
		printf("%-28s %-11s %-21s %10s  %s\n", "ID", "STATE", "CREATED", "RECIPIENTS", "SUBJECT");
		for (i = 0; i < json_array_size(a); i++) {
			json_t *e = json_array_get(a, i);

			fmt_time(when, sizeof(when), jget_int(e, "created_ms"));
			printf("%-28s %-11s %-21s %10lld  %.60s\n", jget_str(e, "id"),
				jget_str(e, "state"), when, jget_int(e, "total"), jget_str(e, "subject"));
		}
	}
	json_decref(j);
	return EX_OK;
}

/* --- export --- */

static const char *const export_cols[] = {
	"email", "state", "class", "code", "esc", "text", "attempts", "updated_ms", "mx", "ip",
	"tls_version", "tls_cipher", "tls_group", "tls_resumed", "tls_verify",
	"tls_subject", "tls_issuer", "tls_not_after", "tls_handshake_ms",
};
#define EXPORT_NCOLS (sizeof(export_cols) / sizeof(export_cols[0]))

/* one CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF */
static void
csv_field(const char *v, int last)
{
	if (strpbrk(v, ",\"\r\n") != NULL) {
		putchar('"');
		for (; *v; v++) {
			if (*v == '"')
				putchar('"');
			putchar(*v);
		}
		putchar('"');
	} else {
		fputs(v, stdout);
	}
	fputs(last ? "\r\n" : ",", stdout);
}

/* the text of JSON value v as a CSV cell ("" for absent or null) */
static const char *
cell(json_t *v, char *buf, size_t cap)
{
	if (v == NULL || json_is_null(v))
		return "";
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	if (json_is_boolean(v))
		return json_is_true(v) ? "1" : "0";
	snprintf(buf, cap, "%g", json_number_value(v));
	return buf;
}

static void
export_one(const char *addr, const char *raw, int csv)
{
	json_error_t je;
	json_t *j = json_loads(raw, 0, &je), *t;
	char buf[EXPORT_NCOLS][32];
	const char *v[EXPORT_NCOLS];
	size_t i;

	if (!json_is_object(j)) {
		/* not written by us: kept as it is, never dropped */
		json_decref(j);
		j = json_pack("{s:s s:s}", "state", "unknown", "record", raw);
	}
	if (!csv) {
		json_t *o = json_pack("{s:s}", "email", addr);
		char *line;

		json_object_update(o, j);
		line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
		if (line == NULL)
			abort();
		puts(line);
		free(line);
		json_decref(o);
		json_decref(j);
		return;
	}
	t = json_object_get(j, "tls");
	v[0] = addr;
	for (i = 1; i < EXPORT_NCOLS; i++) {
		const char *col = export_cols[i];

		if (strncmp(col, "tls_", 4) == 0)
			v[i] = cell(json_is_object(t) ? json_object_get(t, col + 4) : NULL,
				buf[i], sizeof(buf[i]));
		else
			v[i] = cell(json_object_get(j, col), buf[i], sizeof(buf[i]));
	}
	for (i = 0; i < EXPORT_NCOLS; i++)
		csv_field(v[i], i + 1 == EXPORT_NCOLS);
	json_decref(j);
}

static int
cmd_export(int argc, char **argv)
{
	struct ctl_redis *r;
	char k[CTL_KEY_MAX], cursor[32] = "0";
	int csv = o.fmt != CTL_INPUT_JSONL, rc;
	long long n = 0;
	size_t i;

	if (argc != 1)
		die_usage("export: expected a campaign id");
	r = connect_redis();
	rc = ctl_campdef_exists(r, argv[0]);
	if (rc <= 0) {
		if (rc == 0)
			fprintf(stderr, "mailpumpctl: unknown campaign '%s' (expired or never submitted)\n",
				argv[0]);
		else
			fprintf(stderr, "mailpumpctl: redis: %s\n", ctl_redis_error(r));
		ctl_redis_close(r);
		return rc == 0 ? EX_UNKNOWN : EX_REDIS;
	}
	ctl_redis_key(r, k, sizeof(k), CTL_K_RCPT, argv[0]);
	if (csv)
		for (i = 0; i < EXPORT_NCOLS; i++)
			csv_field(export_cols[i], i + 1 == EXPORT_NCOLS);
	/* HSCAN: the hash may be millions of recipients; the campaign may
	 * still be running (a recipient seen twice or not at all is then
	 * possible, as SCAN promises nothing more) */
	do {
		redisReply *rep = ctl_redis_cmd(r, "HSCAN %s %s COUNT 1000", k, cursor);

		if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING ||
		    rep->element[1]->type != REDIS_REPLY_ARRAY) {
			fprintf(stderr, "mailpumpctl: export %s: %s after %lld recipients\n", argv[0],
				rep == NULL ? ctl_redis_error(r) :
				rep->type == REDIS_REPLY_ERROR ? rep->str : "HSCAN: unexpected reply", n);
			if (rep)
				freeReplyObject(rep);
			ctl_redis_close(r);
			return EX_REDIS;
		}
		snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
		for (i = 0; i + 1 < rep->element[1]->elements; i += 2, n++)
			export_one(rep->element[1]->element[i]->str,
				rep->element[1]->element[i + 1]->str, csv);
		freeReplyObject(rep);
		if (ferror(stdout))
			break;
	} while (strcmp(cursor, "0") != 0 && !stop_flag);
	ctl_redis_close(r);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "mailpumpctl: export %s: cannot write: %s\n", argv[0], strerror(errno));
		return EX_USAGE;
	}
	return EX_OK;
}

/* --- suppress --- */

#define SUP_PIPE 1000	/* writes in flight during an import */

struct sup_writer {
	struct ctl_redis *r;
	char key[CTL_KEY_MAX];
	const char *reason, *source;
	unsigned inflight;
	unsigned long added, updated;
	int failed;
};

/* Say why a command's reply is unusable, free it. @return EX_REDIS. */
static int
sup_redis_fail(struct ctl_redis *r, redisReply *rep, const char *what)
{
	fflush(stdout);
	fprintf(stderr, "mailpumpctl: %s\n", rep == NULL ? ctl_redis_error(r) :
		rep->type == REDIS_REPLY_ERROR ? rep->str : what);
	if (rep != NULL)
		freeReplyObject(rep);
	ctl_redis_close(r);
	return EX_REDIS;
}

static void
sup_domain_arg(const char *cmd, const char *v, char *dom, size_t cap)
{
	if (ctl_suppress_domain(v, dom, cap) < 0)
		die_usage("suppress %s: '%s' is not a sender domain", cmd, v);
}

/* Read the replies of the HSETs in flight. @return 0 or -EIO. */
static int
sup_drain(struct sup_writer *w)
{
	while (w->inflight > 0) {
		redisReply *rep;

		if (ctl_redis_reply(w->r, &rep) < 0) {
			fprintf(stderr, "mailpumpctl: %s\n", ctl_redis_error(w->r));
			w->failed = 1;
			return -EIO;
		}
		w->inflight--;
		if (rep->type == REDIS_REPLY_INTEGER) {
			if (rep->integer > 0)
				w->added++;
			else
				w->updated++;
		} else {
			fprintf(stderr, "mailpumpctl: redis %s: HSET: %s\n", ctl_redis_where(w->r),
				rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
			w->failed = 1;
		}
		freeReplyObject(rep);
	}
	return w->failed ? -EIO : 0;
}

/* Queue one HSET of a normalised address (pipelined). */
static int
sup_put(struct sup_writer *w, const char *addr)
{
	char *entry = ctl_suppress_entry(w->reason, w->source, ctl_now_ms(), NULL, NULL);
	const char *argv[4] = { "HSET", w->key, addr, entry };
	int rc;

	if (entry == NULL) {
		fprintf(stderr, "mailpumpctl: out of memory\n");
		exit(EX_USAGE);
	}
	rc = ctl_redis_appendv(w->r, 4, argv, NULL);
	free(entry);
	if (rc < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", ctl_redis_error(w->r));
		w->failed = 1;
		return -EIO;
	}
	if (++w->inflight >= SUP_PIPE)
		return sup_drain(w);
	return 0;
}

static void
sup_writer_init(struct sup_writer *w, struct ctl_redis *r, const char *dom)
{
	enum ctl_suppress_reason rs;

	memset(w, 0, sizeof(*w));
	w->r = r;
	w->reason = o.sup_reason ? o.sup_reason : "manual";
	w->source = o.sup_source ? o.sup_source : "mailpumpctl";
	if (ctl_suppress_reason_parse(w->reason, &rs) < 0)
		die_usage("--reason '%s': expected bounce, unsubscribe, complaint or manual", w->reason);
	ctl_redis_key(r, w->key, sizeof(w->key), CTL_K_SUPPRESS, dom);
}

static int
sup_add(const char *dom, int argc, char **argv)
{
	struct sup_writer w;
	struct ctl_redis *r;
	char addr[320];
	int i;

	if (argc < 1)
		die_usage("suppress add: expected DOMAIN ADDRESS...");
	/* all or nothing: a typo must not half-apply a list of addresses */
	for (i = 0; i < argc; i++) {
		if (ctl_suppress_addr(argv[i], strlen(argv[i]), addr, sizeof(addr)) < 0) {
			fprintf(stderr, "mailpumpctl: suppress add: bad address syntax '%s'; nothing was written\n",
				argv[i]);
			return EX_USAGE;
		}
	}
	r = connect_redis();
	sup_writer_init(&w, r, dom);
	for (i = 0; i < argc && !w.failed; i++) {
		ctl_suppress_addr(argv[i], strlen(argv[i]), addr, sizeof(addr));
		sup_put(&w, addr);
	}
	sup_drain(&w);
	ctl_redis_close(r);
	if (w.failed)
		return EX_REDIS;
	if (o.json) {
		json_t *j = json_pack("{s:s s:s s:s s:I s:I}", "domain", dom, "reason", w.reason,
			"source", w.source, "added", (json_int_t)w.added, "updated", (json_int_t)w.updated);

		print_json(j);
		json_decref(j);
	} else {
		printf("%s: %lu added, %lu updated (reason %s, source %s)\n", dom, w.added,
			w.updated, w.reason, w.source);
	}
	return EX_OK;
}

static int
sup_remove(const char *dom, int argc, char **argv)
{
	char key[CTL_KEY_MAX], addr[320];
	const char **av;
	struct ctl_redis *r;
	redisReply *rep;
	long long n;
	int i;

	if (argc < 1)
		die_usage("suppress remove: expected DOMAIN ADDRESS...");
	av = calloc((size_t)argc + 2, sizeof(*av));
	if (av == NULL)
		return EX_USAGE;
	for (i = 0; i < argc; i++) {
		/* removal takes any spelling an application may have written */
		if (ctl_suppress_addr(argv[i], strlen(argv[i]), addr, sizeof(addr)) < 0) {
			snprintf(addr, sizeof(addr), "%s", argv[i]);
			for (char *p = addr; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p - 'A' + 'a');
		}
		av[2 + i] = strdup(addr);
	}
	r = connect_redis();
	ctl_redis_key(r, key, sizeof(key), CTL_K_SUPPRESS, dom);
	av[0] = "HDEL";
	av[1] = key;
	rep = ctl_redis_cmdv(r, argc + 2, av, NULL);
	for (i = 0; i < argc; i++)
		free((char *)av[2 + i]);
	free(av);
	if (rep == NULL || rep->type != REDIS_REPLY_INTEGER)
		return sup_redis_fail(r, rep, "HDEL: unexpected reply");
	n = rep->integer;
	freeReplyObject(rep);
	ctl_redis_close(r);
	if (o.json) {
		json_t *j = json_pack("{s:s s:I s:I}", "domain", dom, "removed", (json_int_t)n,
			"absent", (json_int_t)(argc - n));

		print_json(j);
		json_decref(j);
	} else {
		printf("%s: %lld removed, %lld not listed\n", dom, n, (long long)argc - n);
	}
	return EX_OK;
}

/* One entry of a list: JSON, or columns. An entry that is not JSON (a
 * writer outside the contract) is shown raw, never dropped. */
static void
sup_list_one(const char *addr, const char *val, unsigned long n)
{
	json_t *e = json_loads(val, 0, NULL);
	char when[40];

	if (!json_is_object(e)) {
		json_decref(e);
		e = json_pack("{s:s}", "raw", val);
	}
	if (o.json) {
		json_t *row = json_pack("{s:s}", "address", addr);
		char *txt;

		json_object_update(row, e);
		txt = json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER);
		printf("%s\n    %s", n ? "," : "", txt ? txt : "{}");
		free(txt);
		json_decref(row);
	} else {
		fmt_time(when, sizeof(when), jget_int(e, "ts_ms"));
		printf("%-40s %-11s %-21s %s\n", addr, json_object_get(e, "raw") ? "?" :
			jget_str(e, "reason"), when, jget_str(e, "source"));
	}
	json_decref(e);
}

static int
sup_list(const char *dom, int argc)
{
	char key[CTL_KEY_MAX], cursor[32] = "0";
	struct ctl_redis *r;
	unsigned long n = 0;

	if (argc != 0)
		die_usage("suppress list: expected DOMAIN only");
	r = connect_redis();
	ctl_redis_key(r, key, sizeof(key), CTL_K_SUPPRESS, dom);
	if (o.json)
		printf("{\n  \"domain\": \"%s\",\n  \"entries\": [", dom);
	else
		printf("%-40s %-11s %-21s %s\n", "ADDRESS", "REASON", "SINCE", "SOURCE");
	do {
		redisReply *rep = ctl_redis_cmd(r, "HSCAN %s %s COUNT 1000", key, cursor);
		const redisReply *items;

		if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING)
			return sup_redis_fail(r, rep, "HSCAN: unexpected reply");
		snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
		items = rep->element[1];
		for (size_t i = 0; i + 1 < items->elements; i += 2)
			sup_list_one(items->element[i]->str, items->element[i + 1]->str, n++);
		freeReplyObject(rep);
	} while (strcmp(cursor, "0") != 0);
	ctl_redis_close(r);
	if (o.json)
		printf("%s],\n  \"count\": %lu\n}\n", n ? "\n  " : "", n);
	else if (!o.quiet)
		fprintf(stderr, "%lu entries\n", n);
	return EX_OK;
}

/*
 * Split one CSV line into cells (RFC 4180 quoting within the line).
 * @return the number of cells, or -1 for an unterminated quote.
 */
static int
csv_split(char *line, char **cell, int max)
{
	char *p = line, *w;
	int n = 0;

	while (n < max) {
		cell[n++] = w = p;
		if (*p == '"') {
			p++;
			for (;;) {
				if (*p == '\0')
					return -1;
				if (*p == '"' && p[1] == '"') {
					*w++ = '"';
					p += 2;
				} else if (*p == '"') {
					p++;
					break;
				} else {
					*w++ = *p++;
				}
			}
			while (*p != '\0' && *p != ',')
				p++;
		} else {
			while (*p != '\0' && *p != ',')
				*w++ = *p++;
		}
		if (*p == '\0') {
			*w = '\0';
			break;
		}
		p++;
		*w = '\0';
	}
	return n;
}

static int
sup_import(const char *dom, int argc, char **argv)
{
	struct sup_writer w;
	struct ctl_redis *r;
	struct submit_ctx x = { 0 };
	char *line = NULL, *cell[256], addr[320], msg[400], ex[80];
	size_t cap = 0;
	ssize_t len;
	unsigned long lineno = 0, invalid = 0;
	int col = -1, first = 1;
	FILE *f;

	if (argc != 1)
		die_usage("suppress import: expected DOMAIN FILE (or - for stdin)");
	f = strcmp(argv[0], "-") == 0 ? stdin : fopen(argv[0], "r");
	if (f == NULL) {
		fprintf(stderr, "mailpumpctl: %s: %s\n", argv[0], strerror(errno));
		return EX_USAGE;
	}
	r = connect_redis();
	sup_writer_init(&w, r, dom);
	if (o.json)
		x.errors = json_array();
	while (!w.failed && (len = getline(&line, &cap, f)) >= 0) {
		char *a = line;

		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (lineno == 1 && (unsigned char)a[0] == 0xef &&
		    (unsigned char)a[1] == 0xbb && (unsigned char)a[2] == 0xbf)
			a += 3;
		if (a[strspn(a, " \t")] == '\0')
			continue;
		if (first) {
			first = 0;
			/* a first line without '@' is a CSV header naming the column */
			if (strchr(a, '@') == NULL) {
				int nc = csv_split(a, cell, 256);

				for (int i = 0; i < nc; i++) {
					char *c = cell[i] + strspn(cell[i], " \t");
					size_t l = strlen(c);

					while (l > 0 && (c[l - 1] == ' ' || c[l - 1] == '\t'))
						c[--l] = '\0';
					if (strcasecmp(c, "email") == 0) {
						col = i;
						break;
					}
				}
				if (col < 0) {
					fprintf(stderr, "mailpumpctl: %s: line %lu: a header without an email column\n",
						argv[0], lineno);
					free(line);
					if (f != stdin)
						fclose(f);
					json_decref(x.errors);
					ctl_redis_close(r);
					return EX_USAGE;
				}
				continue;
			}
		}
		if (col >= 0) {
			int nc = csv_split(a, cell, 256);

			if (nc < 0) {
				snprintf(msg, sizeof(msg), "line %lu: unterminated quoted field", lineno);
				invalid++;
				report_line(&x, lineno, msg, "invalid");
				continue;
			}
			if (col >= nc) {
				snprintf(msg, sizeof(msg), "line %lu: no email cell", lineno);
				invalid++;
				report_line(&x, lineno, msg, "invalid");
				continue;
			}
			a = cell[col];
		}
		if (ctl_suppress_addr(a, strlen(a), addr, sizeof(addr)) < 0) {
			excerpt_arg(ex, sizeof(ex), a);
			snprintf(msg, sizeof(msg), "line %lu: bad address syntax '%s'", lineno, ex);
			invalid++;
			report_line(&x, lineno, msg, "invalid");
			continue;
		}
		sup_put(&w, addr);
	}
	if (!w.failed && ferror(f)) {
		fprintf(stderr, "mailpumpctl: %s: %s\n", argv[0], strerror(errno));
		w.failed = 2;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	if (w.failed != 2)
		sup_drain(&w);
	ctl_redis_close(r);
	if (o.json) {
		json_t *j = json_pack("{s:s s:s s:s s:I s:I s:I s:I s:O}", "domain", dom,
			"reason", w.reason, "source", w.source, "lines", (json_int_t)lineno,
			"added", (json_int_t)w.added, "updated", (json_int_t)w.updated,
			"invalid", (json_int_t)invalid, "errors", x.errors);

		print_json(j);
		json_decref(j);
	} else {
		printf("%s: %lu added, %lu updated, %lu invalid lines (reason %s, source %s)\n",
			dom, w.added, w.updated, invalid, w.reason, w.source);
	}
	json_decref(x.errors);
	if (w.failed)
		return w.failed == 2 ? EX_USAGE : EX_REDIS;
	return EX_OK;
}

static int
cmd_suppress(int argc, char **argv)
{
	char dom[256];

	if (argc < 2)
		die_usage("suppress: expected add|remove|list|import DOMAIN ...");
	sup_domain_arg(argv[0], argv[1], dom, sizeof(dom));
	if (strcmp(argv[0], "add") == 0)
		return sup_add(dom, argc - 2, argv + 2);
	if (strcmp(argv[0], "remove") == 0)
		return sup_remove(dom, argc - 2, argv + 2);
	if (strcmp(argv[0], "list") == 0)
		return sup_list(dom, argc - 2);
	if (strcmp(argv[0], "import") == 0)
		return sup_import(dom, argc - 2, argv + 2);
	die_usage("suppress: unknown action '%s' (add, remove, list or import)", argv[0]);
}

/* --- dead-letters --- */

/* A field of a dead letter as valid UTF-8 text: it may hold anything a
 * third party wrote (invalid UTF-8 is one reason an entry is dead), so
 * bytes that are not UTF-8 are shown as \xHH. */
static char *
utf8_show(const char *p, size_t n)
{
	char *out = malloc(n * 4 + 1), *q = out;
	size_t i = 0;

	if (out == NULL)
		return NULL;
	while (i < n) {
		unsigned char c = (unsigned char)p[i];
		size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 :
			(c & 0xf8) == 0xf0 ? 4 : 0;
		size_t k = 1;

		for (; len > 1 && k < len && i + k < n; k++) {
			if (((unsigned char)p[i + k] & 0xc0) != 0x80)
				break;
		}
		if (c != 0 && len > 0 && k == len && (len == 1 || c >= 0xc2) &&
		    !(c == 0xe0 && (unsigned char)p[i + 1] < 0xa0) &&
		    !(c == 0xed && (unsigned char)p[i + 1] >= 0xa0) &&
		    !(c == 0xf0 && (unsigned char)p[i + 1] < 0x90) &&
		    !(c >= 0xf4 && (c > 0xf4 || (unsigned char)p[i + 1] >= 0x90))) {
			memcpy(q, p + i, len);
			q += len;
			i += len;
		} else {
			q += sprintf(q, "\\x%02x", c);
			i++;
		}
	}
	*q = '\0';
	return out;
}

static json_t *
dead_entry_json(const redisReply *e)
{
	json_t *j = json_object(), *f = json_object();

	json_object_set_new(j, "id", json_string(e->element[0]->str));
	for (size_t k = 0; k + 1 < e->element[1]->elements; k += 2) {
		const redisReply *n = e->element[1]->element[k], *v = e->element[1]->element[k + 1];
		char *ns = utf8_show(n->str, n->len), *vs = utf8_show(v->str, v->len);

		if (ns != NULL && vs != NULL)
			json_object_set_new(f, ns, json_string(vs));	/* ours come last: they win */
		free(ns);
		free(vs);
	}
	json_object_set_new(j, "fields", f);
	return j;
}

static int
cmd_dead_letters(int argc, char **argv)
{
	struct ctl_redis *r;
	redisReply *x, *len, *tot;
	char key[CTL_KEY_MAX], nkey[CTL_KEY_MAX], when[40];
	json_t *out, *arr;
	int n = o.count > 0 ? o.count : 20;

	(void)argv;
	if (argc != 0)
		die_usage("dead-letters: no arguments expected (--count N)");
	r = connect_redis();
	ctl_redis_key(r, key, sizeof(key), CTL_K_JOBS_DEAD);
	ctl_redis_key(r, nkey, sizeof(nkey), CTL_K_JOBS_DEAD_N);
	x = ctl_redis_cmd(r, "XREVRANGE %s + - COUNT %d", key, n);
	len = x != NULL ? ctl_redis_cmd(r, "XLEN %s", key) : NULL;
	tot = len != NULL ? ctl_redis_cmd(r, "GET %s", nkey) : NULL;
	if (x == NULL || len == NULL || tot == NULL || x->type != REDIS_REPLY_ARRAY) {
		fprintf(stderr, "mailpumpctl: %s\n", x != NULL && x->type == REDIS_REPLY_ERROR ?
			x->str : ctl_redis_error(r));
		freeReplyObject(x);
		freeReplyObject(len);
		freeReplyObject(tot);
		ctl_redis_close(r);
		return EX_REDIS;
	}
	out = json_object();
	arr = json_array();
	json_object_set_new(out, "stream", json_string(key));
	json_object_set_new(out, "length", json_integer(len->type == REDIS_REPLY_INTEGER ?
		len->integer : 0));
	json_object_set_new(out, "total", json_integer(tot->type == REDIS_REPLY_STRING ?
		atoll(tot->str) : 0));
	for (size_t i = 0; i < x->elements; i++) {
		const redisReply *e = x->element[i];

		if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
		    e->element[1]->type == REDIS_REPLY_ARRAY)
			json_array_append_new(arr, dead_entry_json(e));
	}
	json_object_set_new(out, "entries", arr);
	freeReplyObject(x);
	freeReplyObject(len);
	freeReplyObject(tot);
	ctl_redis_close(r);
	if (o.json) {
		print_json(out);
		json_decref(out);
		return EX_OK;
	}
	printf("%s: %lld held, %lld dead-lettered in all (newest first)\n", key,
		jget_int(out, "length"), jget_int(out, "total"));
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i), *f = json_object_get(e, "fields");

		fmt_time(when, sizeof(when), atoll(jget_str(f, "dead_ms")));
		printf("\n%s  %s  campaign=%s domain=%s entry=%s\n  reason: %s\n  rcpts: %.200s%s\n",
			jget_str(e, "id"), when, jget_str(f, "campaign"), jget_str(f, "domain"),
			jget_str(f, "entry_id"), jget_str(f, "reason"), jget_str(f, "rcpts"),
			strlen(jget_str(f, "rcpts")) > 200 ? "..." : "");
	}
	json_decref(out);
	return EX_OK;
}

/* --- dkim-record: the TXT record of a key of [dkim] --- */

struct dkim_find {
	const char *domain;
	const char *spec;	/* its "SELECTOR FILE[, SELECTOR FILE]" */
	char domains[512];	/* the domains [dkim] has, for the message */
};

static int
dkim_find_item(void *arg, const struct ctl_conf_item *it)
{
	struct dkim_find *f = arg;
	size_t l = strlen(f->domains);

	if (strcmp(it->key, "mode") == 0 || strcmp(it->key, "threads") == 0 ||
	    strcmp(it->key, "cpus") == 0)
		return 0;
	if (strcasecmp(it->key, f->domain) == 0)
		f->spec = it->value;
	if (l + strlen(it->key) + 3 < sizeof(f->domains))
		snprintf(f->domains + l, sizeof(f->domains) - l, "%s%s", l ? ", " : "", it->key);
	return 0;
}

/* The file of @p selector in @p spec, parsed as ctl_dkim_add_keys does;
 * 0, or -ENOENT with the selectors it has in @p have. */
static int
dkim_spec_file(const char *spec, const char *selector, char *path, size_t cap,
	char *have, size_t havecap)
{
	char buf[4096], *save = NULL, *item;

	snprintf(buf, sizeof(buf), "%s", spec);
	have[0] = '\0';
	for (item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
		char sel[64], p[2048], tail;
		size_t l = strlen(have);

		if (sscanf(item, " %63s %2047s %c", sel, p, &tail) != 2)
			return -EINVAL;
		if (strcasecmp(sel, selector) == 0) {
			snprintf(path, cap, "%s", p);
			return 0;
		}
		snprintf(have + l, havecap - l, "%s%s", l ? ", " : "", sel);
	}
	return -ENOENT;
}

static int
cmd_dkim_record(int argc, char **argv)
{
	char err[1024], path[2048], have[512], txt[1200];
	const char *domain, *selector, *file;
	struct msg_dkim_key *k;
	struct ctl_conf *cf = NULL;
	ssize_t n;

	if (argc != 2)
		die_usage("dkim-record: expected DOMAIN SELECTOR");
	domain = argv[0];
	selector = argv[1];
	if (o.key_file != NULL && o.conf != NULL)
		die_usage("dkim-record: give -c CONF or --key FILE, not both");
	if (o.key_file != NULL) {
		file = o.key_file;
	} else {
		const char *conf = o.conf ? o.conf : getenv("MAILPUMP_CONF");
		struct dkim_find f = { .domain = domain };
		int rc;

		if (conf == NULL || *conf == '\0')
			conf = "/etc/mailpump/mailpump.conf";
		cf = ctl_conf_load(conf, err, sizeof(err));
		if (cf == NULL) {
			fprintf(stderr, "mailpumpctl: dkim-record: %s\n", err);
			return EX_USAGE;
		}
		ctl_conf_each(cf, "dkim", dkim_find_item, &f);
		if (f.spec == NULL) {
			fprintf(stderr, "mailpumpctl: dkim-record: %s: [dkim] has no key for domain "
				"'%s' (it has: %s)\n", conf, domain, f.domains[0] ? f.domains : "none");
			ctl_conf_free(cf);
			return EX_UNKNOWN;
		}
		rc = dkim_spec_file(f.spec, selector, path, sizeof(path), have, sizeof(have));
		if (rc == -EINVAL) {
			fprintf(stderr, "mailpumpctl: dkim-record: %s: [dkim] %s: expected "
				"SELECTOR FILE[, SELECTOR FILE]\n", conf, domain);
			ctl_conf_free(cf);
			return EX_USAGE;
		}
		if (rc < 0) {
			fprintf(stderr, "mailpumpctl: dkim-record: %s: [dkim] %s has no selector "
				"'%s' (it has: %s)\n", conf, domain, selector, have);
			ctl_conf_free(cf);
			return EX_UNKNOWN;
		}
		file = path;
	}
	/* the daemon's own checks: type, size, names */
	k = msg_dkim_key_load(file, domain, selector, err, sizeof(err));
	ctl_conf_free(cf);
	if (k == NULL) {
		fprintf(stderr, "mailpumpctl: dkim-record: %s\n", err);
		return EX_USAGE;
	}
	n = msg_dkim_key_txt(k, txt, sizeof(txt));
	if (n < 0) {
		fprintf(stderr, "mailpumpctl: dkim-record: %s: %s\n", file, strerror((int)-n));
		msg_dkim_key_free(k);
		return EX_USAGE;
	}
	if (o.json) {
		char name[600];
		json_t *j;

		snprintf(name, sizeof(name), "%s._domainkey.%s.", selector, domain);
		j = json_pack("{s:s, s:s, s:i, s:s}", "name", name, "alg",
			msg_dkim_alg_name(msg_dkim_key_alg(k)), "bits", (int)msg_dkim_key_bits(k),
			"rdata", txt);
		json_dumpf(j, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(j);
	} else {
		printf("%s._domainkey.%s. IN TXT ( %s )\n", selector, domain, txt);
	}
	msg_dkim_key_free(k);
	return EX_OK;
}

enum {
	OPT_REDIS = 256, OPT_NS, OPT_JSON, OPT_CAMPAIGN, OPT_ID, OPT_FROM,
	OPT_FROM_NAME, OPT_REPLY_TO, OPT_RETURN_PATH, OPT_DKIM_DOMAIN, OPT_VERP, OPT_SUBJECT, OPT_TEXT, OPT_HTML, OPT_HEADER,
	OPT_UNSUB, OPT_TLS, OPT_TLS_OVR, OPT_WINDOW, OPT_PRIORITY, OPT_RETENTION, OPT_MAX_AGE, OPT_FORMAT,
	OPT_STRICT, OPT_BATCH, OPT_QUIET, OPT_MAX_ERRORS, OPT_INTERVAL,
	OPT_TIMEOUT, OPT_DOMAIN, OPT_TOP, OPT_LIMIT, OPT_HELP, OPT_APPEND,
	OPT_REASON, OPT_SOURCE, OPT_COUNT, OPT_CONF, OPT_KEY,
	OPT_FB_SUBJECT, OPT_FB_TEXT, OPT_FB_HTML, OPT_FB_TLS,
};

static const struct option longopts[] = {
	{ "redis", required_argument, NULL, OPT_REDIS },
	{ "ns", required_argument, NULL, OPT_NS },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "campaign", required_argument, NULL, OPT_CAMPAIGN },
	{ "id", required_argument, NULL, OPT_ID },
	{ "from", required_argument, NULL, OPT_FROM },
	{ "from-name", required_argument, NULL, OPT_FROM_NAME },
	{ "reply-to", required_argument, NULL, OPT_REPLY_TO },
	{ "return-path", required_argument, NULL, OPT_RETURN_PATH },
	{ "dkim-domain", required_argument, NULL, OPT_DKIM_DOMAIN },
	{ "verp", no_argument, NULL, OPT_VERP },
	{ "subject", required_argument, NULL, OPT_SUBJECT },
	{ "text", required_argument, NULL, OPT_TEXT },
	{ "html", required_argument, NULL, OPT_HTML },
	{ "header", required_argument, NULL, OPT_HEADER },
	{ "unsubscribe", required_argument, NULL, OPT_UNSUB },
	{ "tls", required_argument, NULL, OPT_TLS },
	{ "tls-override", required_argument, NULL, OPT_TLS_OVR },
	{ "window", required_argument, NULL, OPT_WINDOW },
	{ "priority", required_argument, NULL, OPT_PRIORITY },
	{ "retention", required_argument, NULL, OPT_RETENTION },
	{ "max-age", required_argument, NULL, OPT_MAX_AGE },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "strict", no_argument, NULL, OPT_STRICT },
	{ "batch", required_argument, NULL, OPT_BATCH },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "max-errors", required_argument, NULL, OPT_MAX_ERRORS },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "domain", required_argument, NULL, OPT_DOMAIN },
	{ "top", required_argument, NULL, OPT_TOP },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "append", required_argument, NULL, OPT_APPEND },
	{ "reason", required_argument, NULL, OPT_REASON },
	{ "source", required_argument, NULL, OPT_SOURCE },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "config", required_argument, NULL, OPT_CONF },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "fallback-subject", required_argument, NULL, OPT_FB_SUBJECT },
	{ "fallback-text", required_argument, NULL, OPT_FB_TEXT },
	{ "fallback-html", required_argument, NULL, OPT_FB_HTML },
	{ "fallback-tls", required_argument, NULL, OPT_FB_TLS },
	{ NULL, 0, NULL, 0 },
};

static long
num_arg(const char *opt, const char *v, long min, long max)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < min || n > max)
		die_usage("--%s '%s': expected a number from %ld to %ld", opt, v, min, max);
	return n;
}

static double
dbl_arg(const char *opt, const char *v)
{
	char *end;
	double d = strtod(v, &end);

	if (end == v || *end || !(d > 0) || d > 1e7)
		die_usage("--%s '%s': expected a positive number of seconds", opt, v);
	return d;
}

static void
camp_set(const char *key, const char *v)
{
	char err[512];

	o.camp_opts = 1;
	if (ctl_campdef_set(&o.camp, key, v, err, sizeof(err)) < 0) {
		fprintf(stderr, "mailpumpctl: %s\n", err);
		exit(EX_USAGE);
	}
}

int
main(int argc, char **argv)
{
	char err[512];
	const char *cmd;
	int c;

	ctl_campdef_init(&o.camp);
	o.redis = getenv("MAILPUMP_REDIS");
	o.ns = getenv("MAILPUMP_NS");
	while ((c = getopt_long(argc, argv, "hc:", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_REDIS: o.redis = optarg; break;
		case OPT_NS: o.ns = optarg; break;
		case OPT_JSON: o.json = 1; break;
		case OPT_CAMPAIGN: o.camp_file = optarg; break;
		case OPT_ID: camp_set("id", optarg); break;
		case OPT_FROM: camp_set("from", optarg); break;
		case OPT_FROM_NAME: camp_set("from_name", optarg); break;
		case OPT_REPLY_TO: camp_set("reply_to", optarg); break;
		case OPT_RETURN_PATH: camp_set("return_path", optarg); break;
		case OPT_DKIM_DOMAIN: camp_set("dkim_domain", optarg); break;
		case OPT_VERP: camp_set("verp", "1"); break;
		case OPT_SUBJECT: camp_set("subject", optarg); break;
		case OPT_TEXT: camp_set("text_file", optarg); break;
		case OPT_HTML: camp_set("html_file", optarg); break;
		case OPT_UNSUB: camp_set("unsubscribe", optarg); break;
		case OPT_TLS: camp_set("tls_policy", optarg); break;
		case OPT_WINDOW: camp_set("window", optarg); break;
		case OPT_PRIORITY: camp_set("priority", optarg); break;
		case OPT_RETENTION: camp_set("retention_s", optarg); break;
		case OPT_MAX_AGE: camp_set("max_age_s", optarg); break;
		case OPT_FB_SUBJECT: camp_set("fallback_subject", optarg); break;
		case OPT_FB_TEXT: camp_set("fallback_text_file", optarg); break;
		case OPT_FB_HTML: camp_set("fallback_html_file", optarg); break;
		case OPT_FB_TLS: camp_set("fallback_tls_policy", optarg); break;
		case OPT_HEADER:
			o.camp_opts = 1;
			if (ctl_campdef_add_header(&o.camp, optarg, err, sizeof(err)) < 0)
				die_usage("%s", err);
			break;
		case OPT_TLS_OVR:
			o.camp_opts = 1;
			if (ctl_campdef_add_tls_override(&o.camp, optarg, err, sizeof(err)) < 0)
				die_usage("%s", err);
			break;
		case OPT_FORMAT:
			if (strcmp(optarg, "csv") == 0)
				o.fmt = CTL_INPUT_CSV;
			else if (strcmp(optarg, "jsonl") == 0 || strcmp(optarg, "json") == 0)
				o.fmt = CTL_INPUT_JSONL;
			else
				die_usage("--format '%s': expected csv or jsonl", optarg);
			break;
		case OPT_STRICT: o.strict = 1; break;
		case OPT_APPEND:
			if (!ctl_campdef_id_valid(optarg))
				die_usage("--append '%s': not a campaign id", optarg);
			o.append = optarg;
			break;
		case OPT_BATCH: o.batch = (unsigned)num_arg("batch", optarg, 1, 1000); break;
		case OPT_QUIET: o.quiet = 1; break;
		case OPT_MAX_ERRORS: o.max_errors = num_arg("max-errors", optarg, 1, 1L << 30); break;
		case OPT_INTERVAL: o.interval = dbl_arg("interval", optarg); break;
		case OPT_TIMEOUT: o.timeout = dbl_arg("timeout", optarg); break;
		case OPT_DOMAIN: o.domain = optarg; break;
		case OPT_TOP: o.top = (int)num_arg("top", optarg, 1, 1000000); break;
		case OPT_REASON: o.sup_reason = optarg; break;
		case OPT_SOURCE: o.sup_source = optarg; break;
		case OPT_LIMIT: o.limit = (int)num_arg("limit", optarg, 1, 1000000); break;
		case OPT_COUNT: o.count = (int)num_arg("count", optarg, 1, 100000); break;
		case 'c':
		case OPT_CONF: o.conf = optarg; break;
		case OPT_KEY: o.key_file = optarg; break;
		case 'h':
		case OPT_HELP:
			fputs(usage_text, stdout);
			return EX_OK;
		default:
			fputs(usage_text, stderr);
			return EX_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	cmd = argv[optind++];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "submit") == 0)
		return cmd_submit(argc, argv);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc, argv);
	if (strcmp(cmd, "watch") == 0)
		return cmd_watch(argc, argv);
	if (strcmp(cmd, "report") == 0)
		return cmd_report(argc, argv);
	if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 ||
	    strcmp(cmd, "cancel") == 0)
		return cmd_control(cmd, argc, argv);
	if (strcmp(cmd, "priority") == 0 || strcmp(cmd, "window") == 0)
		return cmd_set(cmd, argc, argv);
	if (strcmp(cmd, "list") == 0)
		return cmd_list(argc, argv);
	if (strcmp(cmd, "export") == 0)
		return cmd_export(argc, argv);
	if (strcmp(cmd, "suppress") == 0)
		return cmd_suppress(argc, argv);
	if (strcmp(cmd, "dead-letters") == 0)
		return cmd_dead_letters(argc, argv);
	if (strcmp(cmd, "dkim-record") == 0)
		return cmd_dkim_record(argc, argv);
	die_usage("unknown command '%s'", cmd);
}
