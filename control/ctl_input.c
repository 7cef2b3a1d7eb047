/*
 * Recipient input: a small buffered byte reader over a file descriptor,
 * a CSV record state machine (field start, unquoted, quoted, quote seen
 * inside quotes) and a JSON-lines reader on top of jansson. Both fill the
 * same record buffer, bounded by CTL_INPUT_REC_MAX; an oversized record
 * is consumed to its end and reported, never truncated silently.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_input.h"

#define RBUF 65536

struct ctl_input {
	int fd;
	enum ctl_input_fmt fmt;
	unsigned char buf[RBUF];
	size_t pos, len;
	int eof, ioerr;
	unsigned long line;          /* line of the next byte */
	char *rb;                    /* record bytes */
	size_t rlen;
	size_t off[CTL_INPUT_FIELDS];
	size_t flen[CTL_INPUT_FIELDS];
	size_t nf;
	/* CSV header */
	char **cols;
	size_t ncols;
	size_t email_col;
	/* JSON */
	json_t *cur;
	char scratch[CTL_INPUT_FIELDS * 32];
	struct ctl_input_field fields[CTL_INPUT_FIELDS];
};

#define ERR(...) do { \
	if (errlen) snprintf(err, errlen, __VA_ARGS__); \
} while (0)

static int
fill(struct ctl_input *in)
{
	ssize_t n;

	if (in->eof)
		return 0;
	for (;;) {
		n = read(in->fd, in->buf, sizeof(in->buf));
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	if (n <= 0) {
		in->eof = 1;
		if (n < 0)
			in->ioerr = errno;
		return 0;
	}
	in->pos = 0;
	in->len = (size_t)n;
	return 1;
}

static inline int
peekc(struct ctl_input *in)
{
	if (in->pos >= in->len && !fill(in))
		return EOF;
	return in->buf[in->pos];
}

static inline int
getc_in(struct ctl_input *in)
{
	int c = peekc(in);

	if (c != EOF) {
		in->pos++;
		if (c == '\n')
			in->line++;
	}
	return c;
}

int
ctl_field_name_valid(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 64)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

enum csv_state { CSV_START, CSV_UNQ, CSV_Q, CSV_QQ };

struct csv_flags {
	int too_long, too_many, junk, unterminated, chars;
};

static void
rb_put(struct ctl_input *in, struct csv_flags *fl, char c)
{
	if (in->rlen + 2 > CTL_INPUT_REC_MAX) {
		fl->too_long = 1;
		return;
	}
	in->rb[in->rlen++] = c;
}

static void
end_field(struct ctl_input *in, struct csv_flags *fl, size_t start)
{
	if (in->nf >= CTL_INPUT_FIELDS) {
		fl->too_many = 1;
		in->rlen = start;
		return;
	}
	in->off[in->nf] = start;
	in->flen[in->nf] = in->rlen - start;
	in->nf++;
	if (in->rlen + 1 > CTL_INPUT_REC_MAX) {
		fl->too_long = 1;
		in->rlen = start;
	}
	in->rb[in->rlen++] = '\0';
}

/* One CSV record into rb/off/flen. @return 1, 0 (end), or -EINVAL with
 * *first_line set. Blank lines are skipped. */
static int
csv_record(struct ctl_input *in, unsigned long *first_line, char *err, size_t errlen)
{
	struct csv_flags fl;
	enum csv_state st;
	size_t start;
	int c;

again:
	memset(&fl, 0, sizeof(fl));
	st = CSV_START;
	in->rlen = 0;
	in->nf = 0;
	start = 0;
	*first_line = in->line;
	for (;;) {
		c = getc_in(in);
		if (c == EOF) {
			if (st == CSV_Q)
				fl.unterminated = 1;
			if (!fl.chars && in->nf == 0)
				return in->ioerr ? -EIO : 0;
			end_field(in, &fl, start);
			break;
		}
		fl.chars++;
		if (st != CSV_Q && c == '\r' && peekc(in) == '\n') {
			getc_in(in);
			c = '\n';
		}
		if (st == CSV_Q) {
			if (c == '"')
				st = CSV_QQ;
			else
				rb_put(in, &fl, (char)c);
			continue;
		}
		if (c == '\n') {
			if (fl.chars == 1)
				goto again;           /* blank line */
			end_field(in, &fl, start);
			break;
		}
		if (c == ',') {
			end_field(in, &fl, start);
			start = in->rlen;
			st = CSV_START;
			continue;
		}
		switch (st) {
		case CSV_START:
			if (c == '"') {
				st = CSV_Q;
				break;
			}
			rb_put(in, &fl, (char)c);
			st = CSV_UNQ;
			break;
		case CSV_UNQ:
			rb_put(in, &fl, (char)c);
			break;
		case CSV_QQ:
			if (c == '"') {
				rb_put(in, &fl, '"');
				st = CSV_Q;
			} else {
				fl.junk = 1;
				rb_put(in, &fl, (char)c);
				st = CSV_UNQ;
			}
			break;
		case CSV_Q:
			abort();
		}
	}
	if (fl.too_long) {
		ERR("line %lu: record longer than %u bytes", *first_line, CTL_INPUT_REC_MAX);
		return -EINVAL;
	}
	if (fl.unterminated) {
		ERR("line %lu: unterminated quoted field", *first_line);
		return -EINVAL;
	}
	if (fl.junk) {
		ERR("line %lu: text after a closing quote (write \"\" for a quote inside a quoted field)",
			*first_line);
		return -EINVAL;
	}
	if (fl.too_many) {
		ERR("line %lu: more than %d fields", *first_line, CTL_INPUT_FIELDS);
		return -EINVAL;
	}
	return 1;
}

static int
csv_header(struct ctl_input *in, char *err, size_t errlen)
{
	unsigned long line;
	size_t i, j;
	int rc, found = 0;

	rc = csv_record(in, &line, err, errlen);
	if (rc == 0) {
		ERR("line 1: empty input (expected a CSV header row with an 'email' column)");
		return -EINVAL;
	}
	if (rc < 0)
		return rc;
	in->ncols = in->nf;
	in->cols = calloc(in->ncols, sizeof(*in->cols));
	if (in->cols == NULL)
		return -ENOMEM;
	for (i = 0; i < in->nf; i++) {
		char *s = in->rb + in->off[i];
		size_t n = in->flen[i];

		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			s[--n] = '\0';
		while (n && (*s == ' ' || *s == '\t')) {
			s++;
			n--;
		}
		if (strcasecmp(s, "email") == 0) {
			if (found) {
				ERR("line %lu: CSV header has two 'email' columns", line);
				return -EINVAL;
			}
			found = 1;
			in->email_col = i;
		} else if (!ctl_field_name_valid(s, n)) {
			ERR("line %lu: CSV header column %zu '%.64s': a field name is 1-64 of A-Z a-z 0-9 _ . -",
				line, i + 1, s);
			return -EINVAL;
		}
		for (j = 0; j < i; j++)
			if (strcmp(in->cols[j], s) == 0) {
				ERR("line %lu: CSV header names column '%s' twice", line, s);
				return -EINVAL;
			}
		in->cols[i] = strdup(s);
		if (in->cols[i] == NULL)
			return -ENOMEM;
	}
	if (!found) {
		ERR("line %lu: CSV header has no 'email' column", line);
		return -EINVAL;
	}
	return 0;
}

static int
csv_next(struct ctl_input *in, struct ctl_input_rec *rec, char *err, size_t errlen)
{
	size_t i, n = 0;
	int rc;

	rc = csv_record(in, &rec->line, err, errlen);
	if (rc <= 0) {
		if (rc == -EIO)
			ERR("read error: %s", strerror(in->ioerr));
		return rc;
	}
	if (in->nf != in->ncols) {
		ERR("line %lu: %zu fields, the header has %zu", rec->line, in->nf, in->ncols);
		return -EINVAL;
	}
	for (i = 0; i < in->nf; i++) {
		const char *v = in->rb + in->off[i];

		if (i == in->email_col) {
			rec->email = v;
			rec->email_len = in->flen[i];
			continue;
		}
		if (in->flen[i] == 0)
			continue;
		in->fields[n].name = in->cols[i];
		in->fields[n].value = v;
		in->fields[n].len = in->flen[i];
		n++;
	}
	rec->f = in->fields;
	rec->nf = n;
	return 1;
}

/* One physical line into rb. @return 1, 0 (end), -EINVAL (too long). */
static int
raw_line(struct ctl_input *in, unsigned long *first_line)
{
	int c, too_long = 0;

	in->rlen = 0;
	*first_line = in->line;
	for (;;) {
		c = getc_in(in);
		if (c == EOF) {
			if (in->rlen == 0 && !too_long)
				return in->ioerr ? -EIO : 0;
			break;
		}
		if (c == '\n')
			break;
		if (in->rlen + 1 >= CTL_INPUT_REC_MAX)
			too_long = 1;
		else
			in->rb[in->rlen++] = (char)c;
	}
	if (in->rlen && in->rb[in->rlen - 1] == '\r')
		in->rlen--;
	in->rb[in->rlen] = '\0';
	return too_long ? -EINVAL : 1;
}

static int
jsonl_next(struct ctl_input *in, struct ctl_input_rec *rec, char *err, size_t errlen)
{
	json_error_t je;
	const char *key;
	json_t *v;
	size_t n = 0, sc = 0, i;
	int rc;

	json_decref(in->cur);
	in->cur = NULL;
	for (;;) {
		rc = raw_line(in, &rec->line);
		if (rc == 0)
			return 0;
		if (rc == -EIO) {
			ERR("read error: %s", strerror(in->ioerr));
			return -EIO;
		}
		if (rc < 0) {
			ERR("line %lu: line longer than %u bytes", rec->line, CTL_INPUT_REC_MAX);
			return -EINVAL;
		}
		for (i = 0; i < in->rlen; i++)
			if (in->rb[i] != ' ' && in->rb[i] != '\t')
				break;
		if (i < in->rlen)
			break;      /* not blank */
	}
	in->cur = json_loadb(in->rb, in->rlen, JSON_REJECT_DUPLICATES, &je);
	if (in->cur == NULL) {
		ERR("line %lu: invalid JSON at column %d: %s", rec->line, je.column, je.text);
		return -EINVAL;
	}
	if (!json_is_object(in->cur)) {
		ERR("line %lu: expected a JSON object", rec->line);
		return -EINVAL;
	}
	json_object_foreach(in->cur, key, v) {
		const char *s;
		size_t len;

		if (strcasecmp(key, "email") == 0) {
			if (rec->email != NULL) {
				ERR("line %lu: two 'email' members", rec->line);
				return -EINVAL;
			}
			if (!json_is_string(v)) {
				ERR("line %lu: 'email' must be a string", rec->line);
				return -EINVAL;
			}
			rec->email = json_string_value(v);
			rec->email_len = json_string_length(v);
			continue;
		}
		if (!ctl_field_name_valid(key, strlen(key))) {
			ERR("line %lu: field name '%.64s': use 1-64 of A-Z a-z 0-9 _ . -", rec->line, key);
			return -EINVAL;
		}
		if (json_is_null(v))
			continue;
		if (json_is_string(v)) {
			s = json_string_value(v);
			len = json_string_length(v);
		} else if (json_is_integer(v) || json_is_real(v) || json_is_boolean(v)) {
			char *p = in->scratch + sc;
			int m;

			if (json_is_integer(v))
				m = snprintf(p, 32, "%lld", (long long)json_integer_value(v));
			else if (json_is_real(v))
				m = snprintf(p, 32, "%.17g", json_real_value(v));
			else
				m = snprintf(p, 32, "%s", json_is_true(v) ? "true" : "false");
			s = p;
			len = (size_t)m;
			sc += (size_t)m + 1;
		} else {
			ERR("line %lu: field '%s' must be a string, number or boolean", rec->line, key);
			return -EINVAL;
		}
		if (n >= CTL_INPUT_FIELDS) {
			ERR("line %lu: more than %d fields", rec->line, CTL_INPUT_FIELDS);
			return -EINVAL;
		}
		in->fields[n].name = key;
		in->fields[n].value = s;
		in->fields[n].len = len;
		n++;
	}
	rec->f = in->fields;
	rec->nf = n;
	return 1;
}

struct ctl_input *
ctl_input_open(int fd, enum ctl_input_fmt fmt, char *err, size_t errlen)
{
	struct ctl_input *in;
	int c;

	in = calloc(1, sizeof(*in));
	if (in == NULL || (in->rb = malloc(CTL_INPUT_REC_MAX)) == NULL) {
		free(in);
		ERR("out of memory");
		return NULL;
	}
	in->fd = fd;
	in->line = 1;
	/* UTF-8 byte order mark */
	if (peekc(in) == 0xef && in->len - in->pos >= 3 &&
	    in->buf[in->pos + 1] == 0xbb && in->buf[in->pos + 2] == 0xbf)
		in->pos += 3;
	if (fmt == CTL_INPUT_AUTO) {
		/* look past leading blank lines inside the first buffer */
		size_t i = in->pos;

		c = peekc(in);
		while (i < in->len && (in->buf[i] == ' ' || in->buf[i] == '\t' ||
		       in->buf[i] == '\r' || in->buf[i] == '\n'))
			i++;
		fmt = i < in->len && in->buf[i] == '{' ? CTL_INPUT_JSONL : CTL_INPUT_CSV;
		(void)c;
	}
	in->fmt = fmt;
	if (fmt == CTL_INPUT_CSV && csv_header(in, err, errlen) < 0) {
		ctl_input_close(in);
		return NULL;
	}
	if (in->ioerr) {
		ERR("read error: %s", strerror(in->ioerr));
		ctl_input_close(in);
		return NULL;
	}
	return in;
}

void
ctl_input_close(struct ctl_input *in)
{
	size_t i;

	if (in == NULL)
		return;
	for (i = 0; i < in->ncols; i++)
		free(in->cols ? in->cols[i] : NULL);
	free(in->cols);
	json_decref(in->cur);
	free(in->rb);
	free(in);
}

int
ctl_input_next(struct ctl_input *in, struct ctl_input_rec *rec, char *err,
	size_t errlen)
{
	memset(rec, 0, sizeof(*rec));
	if (in->fmt == CTL_INPUT_JSONL)
		return jsonl_next(in, rec, err, errlen);
	return csv_next(in, rec, err, errlen);
}

enum ctl_input_fmt
ctl_input_format(const struct ctl_input *in)
{
	return in->fmt;
}
