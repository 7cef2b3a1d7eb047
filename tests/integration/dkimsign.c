/*
 * mp-dkimsign: renders personalised messages with msg_ and DKIM-signs
 * them with msg_dkim_, for the independent verifier in dkim_verify.py.
 *
 *   mp-dkimsign [options] OUTDIR < recipients
 *
 * A recipient is one line: the address, then TAB-separated name=value
 * merge fields (backslash-n in a value is a line break). Each message
 * goes to OUTDIR/NNNNN.eml (DKIM-Signature headers, then the message as
 * msg_render_read streams it), the keys' TXT records to OUTDIR/dns.zone
 * as zone-file lines, and stdout gets one JSON line: messages, and the
 * microseconds spent preparing and signing.
 *
 * --split prepares in this thread and signs in a second one, as a worker
 * and a signer thread would; without it msg_dkim_sign_render does both.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "msg.h"
#include "msg_dkim.h"

#define MAX_FIELDS 16

struct item {
	char *addr;
	struct msg_field f[MAX_FIELDS];
	struct msg_fields fields;
	struct msg_render r;
	struct msg_dkim_prepared p;
	char sig[MSG_DKIM_OUT_MAX];
	ssize_t siglen;
};

static struct {
	struct item *it;
	size_t n;
	size_t prepared;        /* items [0, prepared) may be signed */
	_Atomic int failed;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	double sign_us;
} G = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf;

	if (f == NULL || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "mp-dkimsign: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "mp-dkimsign: %s: short read\n", path);
		exit(1);
	}
	buf[st.st_size] = '\0';
	fclose(f);
	return buf;
}

/* a copy of s with backslash-n as LF: values may hold line breaks */
static char *
unescape(const char *s)
{
	char *d = strdup(s), *w = d;

	for (; *s != '\0'; s++) {
		if (s[0] == '\\' && s[1] == 'n') {
			*w++ = '\n';
			s++;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
	return d;
}

/* "addr<TAB>name=value<TAB>..." in place */
static void
parse_rcpt(char *line, struct item *it)
{
	char *save = NULL, *tok = strtok_r(line, "\t", &save);
	size_t n = 0;

	it->addr = strdup(tok != NULL ? tok : "");
	while ((tok = strtok_r(NULL, "\t", &save)) != NULL && n < MAX_FIELDS) {
		char *eq = strchr(tok, '=');

		if (eq == NULL)
			continue;
		*eq = '\0';
		it->f[n].name = strdup(tok);
		it->f[n].value = unescape(eq + 1);
		it->f[n].len = strlen(it->f[n].value);
		n++;
	}
	it->fields.v = it->f;
	it->fields.n = n;
}

static void *
signer(void *arg)
{
	size_t i = 0;
	char err[256];

	(void)arg;
	for (;;) {
		double t0;
		int stop;

		pthread_mutex_lock(&G.mu);
		while (i >= G.prepared && !G.failed && G.prepared < G.n)
			pthread_cond_wait(&G.cv, &G.mu);
		stop = G.failed || i >= G.prepared;
		pthread_mutex_unlock(&G.mu);
		if (stop)
			return NULL;
		t0 = now_us();
		G.it[i].siglen = msg_dkim_sign_prepared(&G.it[i].p, G.it[i].sig,
			sizeof(G.it[i].sig), err, sizeof(err));
		G.sign_us += now_us() - t0;
		if (G.it[i].siglen < 0) {
			fprintf(stderr, "mp-dkimsign: sign %zu: %s\n", i, err);
			G.failed = 1;
			return NULL;
		}
		i++;
	}
}

static void
usage(void)
{
	fputs("usage: mp-dkimsign [options] OUTDIR < recipients\n"
		"  --key FILE:SELECTOR  signing key; twice for two signatures\n"
		"  --domain D           d= domain (default: the From domain)\n"
		"  --from ADDR --from-name T --reply-to ADDR --to-name T\n"
		"  --subject T --text FILE --html FILE --unsub URL --campaign ID\n"
		"  --header 'Name: value'  extra template header (repeatable)\n"
		"  --sign NAME          extra header name to sign (repeatable)\n"
		"  --time T             Date: and t= (default: now)\n"
		"  --split              prepare here, sign in a signer thread\n",
		stderr);
	exit(1);
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "key", 1, 0, 'k' }, { "domain", 1, 0, 'd' }, { "from", 1, 0, 'f' },
		{ "from-name", 1, 0, 'F' }, { "reply-to", 1, 0, 'r' },
		{ "to-name", 1, 0, 'T' }, { "subject", 1, 0, 's' },
		{ "text", 1, 0, 'x' }, { "html", 1, 0, 'h' }, { "unsub", 1, 0, 'u' },
		{ "campaign", 1, 0, 'c' }, { "header", 1, 0, 'H' },
		{ "sign", 1, 0, 'S' }, { "time", 1, 0, 't' }, { "split", 0, 0, 'p' },
		{ 0, 0, 0, 0 },
	};
	struct msg_template_spec spec = { .campaign_id = "dkimtest" };
	struct msg_header hdrs[MSG_MAX_HEADERS];
	const char *keyarg[MSG_DKIM_MAX_SIGS], *names[MSG_DKIM_MAX_NAMES];
	struct msg_dkim_key *keys[MSG_DKIM_MAX_SIGS];
	const char *domain = NULL;
	size_t nkeys = 0, nhdr = 0, nnames = 0, cap = 0;
	time_t when = time(NULL);
	int split = 0, opt;
	char err[512], line[8192], path[4096];
	struct msg_template *t;
	struct msg_dkim_opts o;
	pthread_t th;
	double prep_us = 0, t0;
	FILE *z;

	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'k':
			if (nkeys == MSG_DKIM_MAX_SIGS)
				usage();
			keyarg[nkeys++] = optarg;
			break;
		case 'd': domain = optarg; break;
		case 'f': spec.from_addr = optarg; break;
		case 'F': spec.from_name = optarg; break;
		case 'r': spec.reply_to = optarg; break;
		case 'T': spec.to_name = optarg; break;
		case 's': spec.subject = optarg; break;
		case 'x': spec.text = slurp(optarg); break;
		case 'h': spec.html = slurp(optarg); break;
		case 'u': spec.unsub_url = optarg; break;
		case 'c': spec.campaign_id = optarg; break;
		case 'H': {
			char *colon = strchr(optarg, ':');

			if (colon == NULL || nhdr == MSG_MAX_HEADERS)
				usage();
			*colon = '\0';
			hdrs[nhdr].name = optarg;
			hdrs[nhdr++].value = colon[1] == ' ' ? colon + 2 : colon + 1;
			break;
		}
		case 'S':
			if (nnames == MSG_DKIM_MAX_NAMES)
				usage();
			names[nnames++] = optarg;
			break;
		case 't': when = (time_t)strtoll(optarg, NULL, 10); break;
		case 'p': split = 1; break;
		default: usage();
		}
	}
	if (optind + 1 != argc || nkeys == 0 || spec.from_addr == NULL)
		usage();
	if (domain == NULL)
		domain = strrchr(spec.from_addr, '@') ? strrchr(spec.from_addr, '@') + 1 : "";
	spec.headers = hdrs;
	spec.nheaders = nhdr;
	if ((t = msg_template_compile(&spec, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mp-dkimsign: template: %s\n", err);
		return 1;
	}

	snprintf(path, sizeof(path), "%s/dns.zone", argv[optind]);
	if ((z = fopen(path, "w")) == NULL) {
		fprintf(stderr, "mp-dkimsign: %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < nkeys; i++) {
		char file[4096], txt[1024];
		char *sel;

		snprintf(file, sizeof(file), "%s", keyarg[i]);
		if ((sel = strrchr(file, ':')) == NULL)
			usage();
		*sel++ = '\0';
		if ((keys[i] = msg_dkim_key_load(file, domain, sel, err, sizeof(err))) == NULL) {
			fprintf(stderr, "mp-dkimsign: %s\n", err);
			return 1;
		}
		if (msg_dkim_key_txt(keys[i], txt, sizeof(txt)) < 0)
			return 1;
		fprintf(z, "%s._domainkey.%s. IN TXT %s\n", sel, domain, txt);
	}
	fclose(z);
	o = (struct msg_dkim_opts){ .keys = (const struct msg_dkim_key *const *)keys,
		.nkeys = nkeys, .names = names, .nnames = nnames, .t = when };

	while (fgets(line, sizeof(line), stdin) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (G.n == cap) {
			cap = cap ? cap * 2 : 256;
			if ((G.it = realloc(G.it, cap * sizeof(*G.it))) == NULL)
				return 1;
		}
		memset(&G.it[G.n], 0, sizeof(G.it[G.n]));
		parse_rcpt(line, &G.it[G.n]);
		G.it[G.n].fields.index = G.n;
		G.n++;
	}

	if (split && pthread_create(&th, NULL, signer, NULL) != 0)
		return 1;
	for (size_t i = 0; i < G.n && !G.failed; i++) {
		struct item *it = &G.it[i];
		int rc;

		if (msg_render_open(&it->r, t, it->addr, &it->fields, MSG_F_8BITMIME,
		    when, err, sizeof(err)) < 0) {
			fprintf(stderr, "mp-dkimsign: %s: %s\n", it->addr, err);
			G.failed = 1;
			break;
		}
		t0 = now_us();
		if (split) {
			rc = msg_dkim_prepare_render(&it->p, &it->r, &o, err, sizeof(err));
		} else {
			it->siglen = msg_dkim_sign_render(&it->r, &o, it->sig,
				sizeof(it->sig), err, sizeof(err));
			rc = it->siglen < 0 ? (int)it->siglen : 0;
		}
		prep_us += now_us() - t0;
		if (rc < 0) {
			fprintf(stderr, "mp-dkimsign: %s: %s\n", it->addr, err);
			G.failed = 1;
		}
		pthread_mutex_lock(&G.mu);
		G.prepared = i + 1;
		pthread_cond_signal(&G.cv);
		pthread_mutex_unlock(&G.mu);
	}
	if (split) {
		pthread_mutex_lock(&G.mu);
		pthread_cond_signal(&G.cv);
		pthread_mutex_unlock(&G.mu);
		pthread_join(th, NULL);
	}
	if (G.failed)
		return 1;

	for (size_t i = 0; i < G.n; i++) {
		struct item *it = &G.it[i];
		char buf[4096];
		ssize_t n;
		FILE *f;

		snprintf(path, sizeof(path), "%s/%05zu.eml", argv[optind], i);
		if ((f = fopen(path, "wb")) == NULL) {
			fprintf(stderr, "mp-dkimsign: %s: %s\n", path, strerror(errno));
			return 1;
		}
		fwrite(it->sig, 1, (size_t)it->siglen, f);
		while ((n = msg_render_read(&it->r, buf, sizeof(buf))) > 0)
			fwrite(buf, 1, (size_t)n, f);
		if (fclose(f) != 0 || n < 0)
			return 1;
	}
	/* without --split, prepare_us includes the signing */
	printf("{\"messages\":%zu,\"split\":%s,\"prepare_us\":%.1f,\"sign_us\":%.1f}\n",
		G.n, split ? "true" : "false", prep_us, G.sign_us);
	for (size_t i = 0; i < nkeys; i++)
		msg_dkim_key_free(keys[i]);
	msg_template_free(t);
	for (size_t i = 0; i < G.n; i++) {
		for (size_t k = 0; k < G.it[i].fields.n; k++) {
			free((char *)G.it[i].f[k].name);
			free((char *)G.it[i].f[k].value);
		}
		free(G.it[i].addr);
	}
	free(G.it);
	free((char *)spec.text);
	free((char *)spec.html);
	return 0;
}
