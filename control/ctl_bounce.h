/*
 * Bounce classification (ctl_bounce): what a non-delivery means, besides
 * its code. A refusal because the address does not exist is the
 * recipient's problem; one because of the sender's reputation, its
 * authentication (DKIM/SPF/DMARC) or a policy is the sender's, and must
 * neither bounce the address nor feed a suppression list.
 *
 * Rules come from text in the format of control/bounce/rules.conf (the
 * shipped set, embedded at build time) and from operators' own files,
 * loaded first so theirs win. One rule per line, '#' starts a comment:
 *
 *     CLASS  CODE  ESC  TEXT
 *
 *   CLASS  one of the names ctl_bounce_class_name() gives
 *   CODE   the reply code: "550", with 'x' for any digit ("5xx", "55x",
 *          "xxx" = any 4xx or 5xx), or "*" (also matches no code)
 *   ESC    the enhanced status code (RFC 3463): "5.7.26", with "*" for a
 *          whole component ("5.7.*", "*.1.1"), or "*" (also matches none)
 *   TEXT   the rest of the line: a POSIX extended regular expression
 *          searched case-insensitively in the reply text, or "*"
 *
 * The first rule that matches all three wins; nothing matching is "other".
 *
 *   b = ctl_bounce_new();
 *   ctl_bounce_load_file(b, "/etc/mailpump/bounce.rules", err, len);   own first
 *   ctl_bounce_load_text(b, ctl_bounce_builtin, "builtin", err, len);
 *   cls = ctl_bounce_classify(b, 550, "5.7.26", "550-5.7.26 ... unauthenticated");
 */
#ifndef MP_CTL_BOUNCE_H
#define MP_CTL_BOUNCE_H

#include <stddef.h>

/** What a non-delivery says about the address, or about the sender. */
enum ctl_bounce_class {
	CTL_BC_INVALID_RECIPIENT = 0,	/**< no such user / mailbox */
	CTL_BC_BAD_DOMAIN,		/**< no such domain, null MX, unroutable */
	CTL_BC_MAILBOX_FULL,		/**< over quota */
	CTL_BC_MESSAGE_TOO_BIG,
	CTL_BC_POLICY_RELATED,		/**< the receiver's policy (content, relaying, ...) */
	CTL_BC_SPAM_RELATED,		/**< the message looked like spam */
	CTL_BC_REPUTATION,		/**< the sending IP or domain is listed / distrusted */
	CTL_BC_AUTH_FAILURE,		/**< DKIM, SPF or DMARC refused */
	CTL_BC_TLS_REQUIRED,		/**< the receiver wants TLS we did not give */
	CTL_BC_RATE_LIMITED,		/**< too much, too fast */
	CTL_BC_GREYLISTED,
	CTL_BC_OTHER,
	CTL_BC_LAST
};

struct ctl_bounce;

/** Name of a class ("invalid_recipient", ...), "?" when out of range. */
const char *ctl_bounce_class_name(enum ctl_bounce_class c);

/** @return 0 with *out set, or -EINVAL for an unknown name. */
int ctl_bounce_class_parse(const char *name, enum ctl_bounce_class *out);

/**
 * Whether a class is a problem of the address itself (invalid_recipient,
 * bad_domain): the only ones that bounce by default and feed suppression.
 */
int ctl_bounce_class_is_address(enum ctl_bounce_class c);

/** The shipped rules (control/bounce/rules.conf), embedded at build time. */
extern const char ctl_bounce_builtin[];

/** An empty rule set. @return NULL when out of memory. */
struct ctl_bounce *ctl_bounce_new(void);

/**
 * Append the rules in @p text (the format above); @p name labels errors
 * ("name:line: ..."). Nothing is appended when a line is bad.
 * @return number of rules added, or -EINVAL (err filled), -ENOMEM
 */
int ctl_bounce_load_text(struct ctl_bounce *b, const char *text, const char *name,
	char *err, size_t errlen);

/** ctl_bounce_load_text() on a file. @return as it, or -errno of open/read. */
int ctl_bounce_load_file(struct ctl_bounce *b, const char *path, char *err, size_t errlen);

/** Rules loaded so far. */
unsigned ctl_bounce_count(const struct ctl_bounce *b);

/**
 * Classify one reply. @p esc may be NULL or "" (no enhanced code), @p text
 * the whole reply text (may be NULL). Pure: safe from any thread once
 * loading is done.
 * @return the class of the first matching rule, CTL_BC_OTHER if none
 */
enum ctl_bounce_class ctl_bounce_classify(const struct ctl_bounce *b, int code,
	const char *esc, const char *text);

void ctl_bounce_free(struct ctl_bounce *b);

#endif
