/*
 * Streaming recipient reader: CSV with a header row (RFC 4180 quoting:
 * "..." fields with "" for a quote, commas and line breaks inside quotes)
 * or JSON lines (one object per line). One record at a time from a file
 * descriptor through a fixed buffer, so memory does not grow with the
 * number of recipients. Errors are per record and carry its first line
 * number; the reader always resynchronises at the next record.
 *
 * Call order: ctl_input_open (reads and checks the CSV header),
 * ctl_input_next until it returns 0, ctl_input_close.
 *
 * A record is an address plus merge fields. CSV: the column named
 * "email" (case-insensitive) is the address, every other column a field
 * named by its header; an empty cell is an absent field (so a template
 * default applies). JSON: member "email" is the address, other members
 * are fields (strings; numbers and booleans as their JSON text; null is
 * absent; objects and arrays are errors).
 */
#ifndef CTL_INPUT_H
#define CTL_INPUT_H

#include <stddef.h>

#include "ctl_keys.h"

#define CTL_INPUT_REC_MAX   (1u << 20)  /* bytes per record */
/* fields per record: the scheduler passes as many to the template */
#define CTL_INPUT_FIELDS    CTL_RCPT_FIELDS_MAX

enum ctl_input_fmt {
	CTL_INPUT_AUTO = 0,   /* JSON lines if the first byte is '{', else CSV */
	CTL_INPUT_CSV,
	CTL_INPUT_JSONL,
};

struct ctl_input_field {
	const char *name;
	const char *value;    /* NUL-terminated too; may hold other bytes */
	size_t len;
};

struct ctl_input_rec {
	unsigned long line;   /* first line of the record (1 = first line) */
	const char *email;    /* NULL if missing */
	size_t email_len;
	const struct ctl_input_field *f;
	size_t nf;
};

struct ctl_input;

/**
 * Start reading fd (not closed by the reader).
 * @return the reader, or NULL with err filled (e.g. "line 1: CSV header
 *         has no 'email' column").
 */
struct ctl_input *ctl_input_open(int fd, enum ctl_input_fmt fmt, char *err,
	size_t errlen);
void ctl_input_close(struct ctl_input *in);

/**
 * Next record. Storage is valid until the next call.
 * @return 1 with rec filled, 0 at the end, -EINVAL for a bad record
 *         (rec->line set, err says why; call again for the next), -EIO
 *         on a read error (err filled; the end).
 */
int ctl_input_next(struct ctl_input *in, struct ctl_input_rec *rec,
	char *err, size_t errlen);

/** The format in use (after AUTO was resolved). */
enum ctl_input_fmt ctl_input_format(const struct ctl_input *in);

/** 1 if s[0..n) is a merge field name: [A-Za-z0-9_.-]+ */
int ctl_field_name_valid(const char *s, size_t n);

#endif
