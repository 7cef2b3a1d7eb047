/*
 * EHLO extension keywords (RFC 5321 4.1.1.1 and the extension RFCs). The
 * session calls smtp_ext_parse_line() for every line of a 2xx EHLO reply
 * after the first (the first line is the server's greeting name).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "smtp.h"

static const struct {
	const char *kw;
	uint32_t bit;
} ext_kw[] = {
	{ "STARTTLS", SMTP_EXT_STARTTLS },
	{ "PIPELINING", SMTP_EXT_PIPELINING },
	{ "SIZE", SMTP_EXT_SIZE },
	{ "8BITMIME", SMTP_EXT_8BITMIME },
	{ "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
	{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES },
	{ "CHUNKING", SMTP_EXT_CHUNKING },
};

void
smtp_ext_parse_line(struct smtp_ext *ext, const char *line, size_t len)
{
	size_t kwlen = 0, i;

	while (kwlen < len && line[kwlen] != ' ' && line[kwlen] != '\t')
		kwlen++;
	for (i = 0; i < sizeof(ext_kw) / sizeof(ext_kw[0]); i++) {
		if (strlen(ext_kw[i].kw) != kwlen ||
		    strncasecmp(ext_kw[i].kw, line, kwlen) != 0)
			continue;
		ext->bits |= ext_kw[i].bit;
		if (ext_kw[i].bit == SMTP_EXT_SIZE) {
			/* "SIZE" alone or "SIZE 0" means no fixed limit (RFC 1870) */
			uint64_t v = 0;
			size_t j = kwlen;
			int ok = 1, digits = 0;

			while (j < len && line[j] == ' ')
				j++;
			for (; j < len && ok; j++) {
				if (!isdigit((unsigned char)line[j]) || digits >= 19)
					ok = 0;
				else
					v = v * 10 + (uint64_t)(line[j] - '0'), digits++;
			}
			ext->size_max = ok ? v : 0;
		}
		return;
	}
}
