/*
 * Internals shared by the msg_ files: the compiled template (a list of
 * literal and merge-field segments per part) and small UTF-8 / character
 * class helpers. Not part of the public API (include/msg.h is).
 */
#ifndef MSG_INT_H
#define MSG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

enum msg_seg_kind {
	MSG_SEG_LIT = 0,
	MSG_SEG_FIELD,
	MSG_SEG_LAST
};

struct msg_seg {
	uint8_t kind;
	bool has_def;
	const char *s;      /* literal text, or field name */
	size_t len;
	const char *def;    /* default text when has_def */
	size_t dlen;
};

/* A compiled template string; present == false when the spec had NULL. */
struct msg_tpl {
	bool present;
	const char *part;   /* "subject", "text", ... for error messages */
	struct msg_seg *seg;
	uint32_t nseg;
	char *src;          /* owned copy segments point into */
};

struct msg_template {
	char *campaign_id;
	char *from_addr;
	bool from_utf8;
	char *reply_to;
	bool reply_utf8;
	char *msgid_domain;
	struct msg_tpl from_name, to_name, subject, text, html, unsub;
	size_t nhdr;
	char *hname[MSG_MAX_HEADERS];
	struct msg_tpl hval[MSG_MAX_HEADERS];
};

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
size_t msg_utf8_seq(const unsigned char *s, size_t n);
/* Offset of the first invalid UTF-8 byte, or n if all valid. */
size_t msg_utf8_check(const char *s, size_t n);
bool msg_is_atext(unsigned char c);
bool msg_has_nonascii(const char *s, size_t n);

#endif
