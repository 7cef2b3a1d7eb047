/*
 * libFuzzer target for the SMTP reply parser: the input is fed in pieces
 * whose sizes come from the first byte, replies are parsed back to back
 * until the input ends or an error; invariants on the parser state are
 * checked after every call (bounded text, consumed never past the input).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply r;
	size_t step, off = 1, used;
	int rc;

	if (size < 1)
		return 0;
	step = data[0] % 16 + 1;
	if (data[0] >= 240)
		step = size;
	smtp_reply_init(&r);
	while (off < size) {
		size_t n = size - off < step ? size - off : step;

		rc = smtp_reply_feed(&r, data + off, n, &used);
		if (used > n)
			abort();
		if (r.text_len >= SMTP_REPLY_TEXT_MAX || strlen(r.text) != r.text_len ||
		    r.line_len >= SMTP_REPLY_KEEP || r.nlines > SMTP_REPLY_LINES_MAX ||
		    r.pos > SMTP_REPLY_LINE_MAX || strlen(r.esc) >= SMTP_ESC_MAX)
			abort();
		if (rc < 0)
			smtp_reply_init(&r);	/* what a session does: a new connection */
		if (rc == SMTP_REPLY_DONE && (r.code < 200 || r.code > 599 || r.nlines == 0))
			abort();
		off += rc < 0 ? used + 1 : used;
	}
	return 0;
}
