/*
 * mp-dkimbench: what DKIM costs per message, split as a worker and a
 * signer thread would see it. For bodies of 1, 16 and 128 KiB: the render
 * pass alone (msg_render_size, the baseline), msg_dkim_prepare_render
 * (one render pass + SHA-256 of body and headers) and OpenSSL's
 * allocations in it; for each key type, msg_dkim_sign_prepared. One
 * thread, wall clock, each figure a loop of at least 0.3 s.
 * Prints a markdown table and one JSON line, and writes both to
 * $MP_BENCH_RESULTS/dkim-<UTC date>.{md,json} when that is set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "msg.h"
#include "msg_dkim.h"

static unsigned long nallocs;

static void *
count_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	nallocs++;
	return malloc(n);
}

static void *
count_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	nallocs++;
	return realloc(p, n);
}

static void
plain_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	free(p);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct msg_dkim_key *
make_key(const char *dir, const char *alg, int bits, const char *sel)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
	EVP_PKEY *k = NULL;
	struct msg_dkim_key *dk;
	char path[512], err[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.pem", dir, sel);
	if (c == NULL || EVP_PKEY_keygen_init(c) != 1 ||
	    (bits > 0 && EVP_PKEY_CTX_set_rsa_keygen_bits(c, bits) != 1) ||
	    EVP_PKEY_keygen(c, &k) != 1 || (f = fopen(path, "w")) == NULL)
		abort();
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(c);
	if ((dk = msg_dkim_key_load(path, "example.com", sel, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mp-dkimbench: %s\n", err);
		exit(1);
	}
	unlink(path);
	return dk;
}

static void
report(FILE *f, const char *date, const double *base, const double *prep,
	const double *allocs, const double *sign, const char *const kn[4])
{
	fprintf(f, "## DKIM, %s\n\n", date);
	fprintf(f, "Worker side: RSA-2048 + Ed25519 prepared together (us per"
		" message; the render pass alone for comparison)\n\n");
	fprintf(f, "| body | render pass | msg_dkim_prepare_render | OpenSSL allocations |\n"
		"|---:|---:|---:|---:|\n");
	for (int s = 0; s < 3; s++)
		fprintf(f, "| %d KiB | %.1f | %.1f | %.1f |\n", s == 0 ? 1 : s == 1 ? 16 : 128,
			base[s], prep[s], allocs[s]);
	fprintf(f, "\nSigner side: msg_dkim_sign_prepared, one signature (us)\n\n"
		"| key | us |\n|---|---:|\n");
	for (int i = 0; i < 4; i++)
		fprintf(f, "| %s | %.1f |\n", kn[i], sign[i]);
	fprintf(f, "\n");
}

int
main(void)
{
	static const size_t sizes[] = { 1024, 16384, 131072 };
	static const struct { const char *alg; int bits; } kt[] = {
		{ "RSA", 1024 }, { "RSA", 2048 }, { "RSA", 4096 }, { "ED25519", 0 },
	};
	static const char *const kname[4] = { "rsa1024", "rsa2048", "rsa4096", "ed25519" };
	struct msg_dkim_key *keys[4];
	double prep[3], base[3], sign[4], allocs[3];
	char dir[] = "/tmp/mp-dkimbench-XXXXXX", err[256], json[1024];
	char date[32], stamp[32];
	struct msg_dkim_prepared p;
	const char *dir_out;
	time_t now_s = time(NULL);
	struct tm tm;

	gmtime_r(&now_s, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);

	CRYPTO_set_mem_functions(count_malloc, count_realloc, plain_free);
	if (mkdtemp(dir) == NULL)
		return 1;
	for (int i = 0; i < 4; i++)
		keys[i] = make_key(dir, kt[i].alg, kt[i].bits, kname[i]);
	rmdir(dir);

	for (int s = 0; s < 3; s++) {
		const struct msg_dkim_key *k2[2] = { keys[1], keys[3] };
		struct msg_dkim_opts o = { .keys = k2, .nkeys = 2, .t = 1796000000 };
		struct msg_template_spec spec = {
			.campaign_id = "bench", .from_addr = "news@example.com",
			.from_name = "News", .subject = "Hello {{first}}",
			.unsub_url = "https://example.com/u/{{first}}",
		};
		struct msg_field fv[] = { { "first", "Ann", 3 } };
		struct msg_fields f = { .v = fv, .n = 1 };
		struct msg_template *t;
		struct msg_render r;
		char *text = malloc(sizes[s] + 1);
		unsigned long a0;
		double t0;
		long n;

		/* 72-character lines with a merge field now and then */
		for (size_t i = 0; i < sizes[s]; i++)
			text[i] = i % 73 == 72 ? '\n' : (char)('a' + i % 26);
		memcpy(text, "Hi {{first}},", 13);
		text[sizes[s]] = '\0';
		spec.text = text;
		if ((t = msg_template_compile(&spec, err, sizeof(err))) == NULL ||
		    msg_render_open(&r, t, "ann@example.net", &f, 0, 1796000000, err,
		    sizeof(err)) < 0) {
			fprintf(stderr, "mp-dkimbench: %s\n", err);
			return 1;
		}
		for (n = 0, t0 = now(); n < 50 || now() - t0 < 0.3; n++)
			msg_render_size(&r);
		base[s] = (now() - t0) / n * 1e6;
		a0 = nallocs;
		for (n = 0, t0 = now(); n < 50 || now() - t0 < 0.3; n++)
			if (msg_dkim_prepare_render(&p, &r, &o, err, sizeof(err)) < 0)
				return 1;
		prep[s] = (now() - t0) / n * 1e6;
		allocs[s] = (double)(nallocs - a0) / n;
		msg_template_free(t);
		free(text);
	}
	for (int i = 0; i < 4; i++) {
		const struct msg_dkim_key *k1[1] = { keys[i] };
		struct msg_dkim_opts o = { .keys = k1, .nkeys = 1, .t = 1796000000 };
		static const char hdr[] = "From: a@example.com\r\nSubject: x\r\n";
		uint8_t bh[MSG_DKIM_HASH_LEN] = { 0 };
		char out[MSG_DKIM_OUT_MAX];
		double t0;
		long n;

		if (msg_dkim_prepare(&p, hdr, sizeof(hdr) - 1, bh, &o, err, sizeof(err)) < 0)
			return 1;
		for (n = 0, t0 = now(); n < 20 || now() - t0 < 0.3; n++)
			if (msg_dkim_sign_prepared(&p, out, sizeof(out), err, sizeof(err)) < 0)
				return 1;
		sign[i] = (now() - t0) / n * 1e6;
	}

	snprintf(json, sizeof(json), "{\"bench\":\"dkim\",\"date\":\"%s\","
		"\"body_kib\":[1,16,128],\"render_us\":[%.2f,%.2f,%.2f],"
		"\"prepare_us\":[%.2f,%.2f,%.2f],\"prepare_allocs\":[%.1f,%.1f,%.1f],"
		"\"sign_us\":{\"rsa1024\":%.1f,\"rsa2048\":%.1f,\"rsa4096\":%.1f,"
		"\"ed25519\":%.1f}}\n", date, base[0], base[1], base[2], prep[0], prep[1],
		prep[2], allocs[0], allocs[1], allocs[2], sign[0], sign[1], sign[2], sign[3]);
	report(stdout, date, base, prep, allocs, sign, kname);
	fputs(json, stdout);
	if ((dir_out = getenv("MP_BENCH_RESULTS")) != NULL && *dir_out != '\0') {
		char path[600];
		FILE *f;

		mkdir(dir_out, 0755);
		snprintf(path, sizeof(path), "%s/dkim-%s.md", dir_out, stamp);
		if ((f = fopen(path, "w")) != NULL) {
			report(f, date, base, prep, allocs, sign, kname);
			fclose(f);
		}
		snprintf(path, sizeof(path), "%s/dkim-%s.json", dir_out, stamp);
		if ((f = fopen(path, "w")) != NULL) {
			fputs(json, f);
			fclose(f);
		}
	}
	for (int i = 0; i < 4; i++)
		msg_dkim_key_free(keys[i]);
	return 0;
}
