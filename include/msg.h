/*
 * Message rendering (msg_): a campaign template is compiled once
 * (msg_template_compile), then each recipient's RFC 5322 message is
 * streamed into the caller's buffers (msg_render_open, msg_render_read
 * until 0). No heap is used per message and no full copy of the message
 * is ever built: struct msg_render is a fixed-size state the caller owns.
 *
 * Call order per recipient:
 *   msg_render_open()   validates everything (fields, encodings, lengths);
 *                       data errors are reported here, never later
 *   msg_render_size()   optional: exact byte count for SMTP SIZE=
 *   msg_render_read()   repeatedly until it returns 0
 *
 * Encodings, decided per recipient at open:
 *  - body part: 7bit if ASCII, no NUL and every line <= 998 octets (997
 *    for a line starting with "." under MSG_F_DOTSTUFF); 8bit if the same
 *    but non-ASCII and MSG_F_8BITMIME; quoted-printable otherwise, and
 *    also when a 7bit/8bit part of a multipart message contains "=_mp"
 *    (boundaries are "=_mp" + 16 hex digits, and "=_" cannot occur in
 *    quoted-printable, so the boundary never occurs in the content).
 *    Lone LF and lone CR become CRLF. A part not ending in a line break
 *    gets CRLF (7bit/8bit) or a soft line break (QP, content unchanged).
 *  - Subject, display names, extra header values: as is and folded at
 *    whitespace near 78 columns; RFC 2047 B encoded words (UTF-8, <= 75
 *    chars, lines <= 76) when non-ASCII without MSG_F_SMTPUTF8, when the
 *    text contains "=?", or when a word is too long to fold (> 900).
 *    Display names with specials are quoted-strings. Trailing whitespace
 *    of unstructured values is dropped.
 *
 * The rendered stream uses CRLF line endings only, every line is at most
 * 998 octets, and it ends with CRLF. It never contains the final "."
 * terminator: the SMTP layer sends CRLF "." CRLF itself after DATA (with
 * MSG_F_DOTSTUFF), or uses BDAT LAST (without it).
 */
#ifndef MSG_H
#define MSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/** Render flags (msg_render_open) and address flags (msg_addr_valid). */
#define MSG_F_DOTSTUFF  0x1u /**< double a "." starting a line (DATA) */
#define MSG_F_SMTPUTF8  0x2u /**< raw UTF-8 allowed in headers/addresses */
#define MSG_F_8BITMIME  0x4u /**< 8bit bodies allowed (else non-ASCII -> QP) */

/** Limits enforced at compile time. */
#define MSG_MAX_HEADERS     32  /**< extra headers per template */
#define MSG_MAX_HNAME       64  /**< extra header name length */
#define MSG_MAX_TOKEN       64  /**< Message-ID token / campaign id length */
#define MSG_LINE_MAX        998 /**< octets per line, CRLF excluded */

/** One extra header of a template: name and value (value is a template). */
struct msg_header {
	const char *name;
	const char *value;
};

/**
 * What a campaign template is compiled from. Strings are copied; the spec
 * may be freed after msg_template_compile() returns.
 *
 * Fields marked "template" may contain merge fields: `{{name}}` or
 * `{{name|default text}}` (spaces around the name are ignored; names are
 * [A-Za-z0-9_.-]+; the default runs to the first "}}" and may be empty).
 * A field missing from the recipient's msg_fields uses its default; with
 * no default the recipient fails with an error naming the field.
 * In the HTML body merged values are HTML-escaped (& < > " '); in the
 * unsubscribe URL they are percent-encoded (all but A-Za-z0-9-._~).
 */
struct msg_template_spec {
	const char *campaign_id;  /**< [A-Za-z0-9._-], for Message-ID; may be NULL if every recipient brings a token */
	const char *from_addr;    /**< required, RFC 5321 mailbox */
	const char *from_name;    /**< optional display name (template) */
	const char *reply_to;     /**< optional address */
	const char *to_name;      /**< optional recipient display name (template), e.g. "{{first}} {{last}}" */
	const char *subject;      /**< required (template) */
	const char *text;         /**< text/plain body (template) */
	const char *html;         /**< text/html body (template); text and/or html required */
	const struct msg_header *headers; /**< extra headers; values are templates */
	size_t nheaders;
	const char *unsub_url;    /**< optional https:// URL (template): List-Unsubscribe + One-Click */
	const char *msgid_domain; /**< Message-ID right side; default: From domain */
};

/** A compiled template is immutable: all workers may share one. */
struct msg_template;

/**
 * Compile a template. Syntax errors name the part and position, e.g.
 * "subject: 1:7: unterminated merge field".
 * @return the template, or NULL with err filled (EINVAL-class data errors,
 *         or "out of memory").
 */
struct msg_template *msg_template_compile(const struct msg_template_spec *spec,
	char *err, size_t errlen);
void msg_template_free(struct msg_template *t);

/**
 * One merge field. value has an explicit length: values may hold any byte,
 * CR/LF/NUL are rejected only where they would end up in a header.
 * Values must be valid UTF-8.
 */
struct msg_field {
	const char *name;
	const char *value;
	size_t len;
};

/**
 * A recipient's merge fields: a plain array of name/value pairs (first
 * match wins). The field `email` always resolves to the recipient address
 * given to msg_render_open (a pair named "email" is ignored).
 *
 * Message-ID is "<msgid_token@domain>" when msgid_token is set (it must be
 * [A-Za-z0-9._-], at most MSG_MAX_TOKEN long and unique per message),
 * else "<campaign_id.index@domain>": unique as long as campaign ids are
 * unique and index is the recipient's index within the campaign (a retry
 * of the same recipient gets the same Message-ID, which is what we want).
 * The arrays and strings must stay valid until the last msg_render_read.
 */
struct msg_fields {
	const struct msg_field *v;
	size_t n;
	const char *msgid_token;
	uint64_t index;
};

/** Streaming render state: fixed size, no heap, owned by the caller.
 * Plain data: it may be copied (msg_render_size does so). Fields are
 * private. */
struct msg_render {
	uint32_t magic;
	uint32_t flags;
	const struct msg_template *t;
	struct msg_fields f;
	const char *rcpt;
	size_t rcpt_len;
	time_t date;
	char boundary[24];
	uint8_t mode_subject, mode_from, mode_to;
	uint8_t mode_hdr[MSG_MAX_HEADERS];
	uint8_t cte[2];           /* per body part: text, html */
	/* generator */
	uint16_t stage;
	uint16_t phase;
	uint16_t idx;
	uint16_t col;
	uint8_t tphase;
	uint8_t bol;
	uint8_t last_lf;
	struct msg_cur {
		const void *tpl;
		const char *p;
		size_t left;
		uint32_t seg;
		uint8_t esc_mode;
		uint8_t isval;
		uint8_t esc_len, esc_pos;
		char esc[8];
	} cur;
	uint16_t pend_off, pend_len;
	char pend[512];
};

/**
 * Validate and prepare one recipient's message. Every data problem is
 * found here so msg_render_read never fails midway: missing field without
 * default, CR/LF/NUL or control character in a header value (names the
 * field), invalid UTF-8, non-ASCII address without MSG_F_SMTPUTF8, header
 * line that cannot be folded to 998 octets.
 * @param r      state to initialise
 * @param rcpt_addr recipient (RFC 5321 mailbox), also field `email`
 * @param fields merge fields (may be NULL: no fields)
 * @param flags  MSG_F_*
 * @param date   Date: header value (UTC, RFC 5322 format)
 * @return 0, or -EINVAL with err filled.
 */
int msg_render_open(struct msg_render *r, const struct msg_template *t,
	const char *rcpt_addr, const struct msg_fields *fields, unsigned flags,
	time_t date, char *err, size_t errlen);

/**
 * Write the next bytes of the message. Any cap >= 1 works. Its type is
 * the byte-source callback type `ssize_t (*)(void *src, void *buf,
 * size_t cap)` so the SMTP layer can pull from it directly; src must be
 * an opened struct msg_render.
 * @return bytes written (> 0), 0 at the end, -EINVAL if src is not an
 *         opened render state or cap is 0 / buf NULL.
 */
ssize_t msg_render_read(void *src, void *buf, size_t cap);

/**
 * Exact byte count of the whole message as msg_render_read produces it
 * (including dot-stuffing when MSG_F_DOTSTUFF is set), by a counting dry
 * run on a copy of r; r is not modified. Valid at any point after open.
 * For the SIZE= parameter use msg_render_smtp_size (RFC 1870 excludes
 * the stuffed dots).
 * @return size, or -EINVAL if r is not opened.
 */
ssize_t msg_render_size(const struct msg_render *r);

/**
 * Message size as RFC 1870 defines it for MAIL FROM SIZE=: like
 * msg_render_size but without the dots added by MSG_F_DOTSTUFF.
 * @return size, or -EINVAL if r is not opened.
 */
ssize_t msg_render_smtp_size(const struct msg_render *r);

/** Where the generator is ("subject", "part-body", "end"...), for logs. */
const char *msg_render_stage_name(const struct msg_render *r);

/** Restart r at the first byte of the message (e.g. for a new attempt). */
void msg_render_rewind(struct msg_render *r);

/**
 * RFC 5321 Mailbox syntax: local-part (dot-atom or quoted-string, <= 64
 * octets) "@" domain (LDH labels <= 63, total <= 255) or address literal
 * ([1.2.3.4] or [IPv6:...]); whole address <= 254 octets. UTF-8 in the
 * local part and domain only with MSG_F_SMTPUTF8.
 * @return 0 if valid, -EINVAL otherwise.
 */
int msg_addr_valid(const char *addr, unsigned flags);

#endif
