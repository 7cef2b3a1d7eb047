/*
 * ctl_bounce: the shipped rules against real reply texts of the large
 * mailbox providers and common MTAs (table-driven), the rule syntax and its
 * errors, an operator's rule overriding a shipped one, and which classes
 * count as the address's own problem.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "ctl_bounce.h"
#include "mp_test.h"

struct vec {
	int code;
	const char *esc;
	const char *text;
	const char *want;
};

/* Replies as the servers send them (addresses and IPs made up). */
static const struct vec vecs[] = {
	/* Gmail */
	{ 550, "5.1.1", "550-5.1.1 The email account that you tried to reach does not exist. "
	  "Please try double-checking the recipient's email address for typos", "invalid_recipient" },
	{ 550, "5.7.26", "550-5.7.26 This mail has been blocked because the sender is unauthenticated. "
	  "Gmail requires all senders to authenticate with either SPF or DKIM.", "auth_failure" },
	{ 550, "5.7.26", "550-5.7.26 Unauthenticated email from example.com is not accepted due to "
	  "domain's DMARC policy.", "auth_failure" },
	{ 550, "5.7.27", "550-5.7.27 The sender's domain does not pass SPF", "auth_failure" },
	{ 421, "4.7.28", "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail "
	  "originating from your IP address.", "rate_limited" },
	{ 452, "4.2.2", "452-4.2.2 The email account that you tried to reach is over quota.",
	  "mailbox_full" },
	{ 552, "5.2.2", "552-5.2.2 The email account that you tried to reach is over quota and "
	  "inactive.", "mailbox_full" },
	{ 552, "5.3.4", "552-5.3.4 Your message exceeded Google's message size limits.",
	  "message_too_big" },
	{ 550, "5.7.1", "550-5.7.1 Our system has detected that this message is likely unsolicited "
	  "mail. To reduce the amount of spam sent to Gmail, this message has been blocked.",
	  "spam_related" },
	{ 550, "5.7.1", "550-5.7.1 The IP you're using to send mail is not authorized to send email "
	  "directly to our servers. Please use the SMTP relay at your service provider instead.",
	  "policy_related" },
	/* Outlook / Microsoft 365 */
	{ 550, "5.7.1", "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please "
	  "contact your Internet service provider since part of their network is on our block list "
	  "(S3140).", "reputation" },
	{ 550, "5.5.0", "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).",
	  "invalid_recipient" },
	{ 550, "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
	  "address lookup", "bad_domain" },
	{ 550, "5.7.606", "550 5.7.606 Access denied, banned sending IP [192.0.2.10].", "reputation" },
	{ 451, "4.7.650", "451 4.7.650 The mail server [192.0.2.10] has been temporarily rate limited "
	  "due to IP reputation.", "rate_limited" },
	/* Yahoo / AOL */
	{ 553, "5.7.1", "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.10, because "
	  "the ip is in Spamhaus's list", "reputation" },
	{ 421, "4.7.0", "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to "
	  "unexpected volume or user complaints", "rate_limited" },
	{ 554, "5.7.9", "554 5.7.9 Message not accepted for policy reasons.", "policy_related" },
	{ 554, NULL, "554 delivery error: dd This user doesn't have a yahoo.com account "
	  "(u@yahoo.com) [0] - mta1047.mail.ne1.yahoo.com", "invalid_recipient" },
	/* Spamhaus and other lists, Postfix-style */
	{ 554, "5.7.1", "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using "
	  "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10", "reputation" },
	{ 550, "5.7.1", "550 5.7.1 Mail from 192.0.2.10 refused, listed at b.barracudacentral.org",
	  "reputation" },
	/* Postfix */
	{ 550, "5.1.1", "550 5.1.1 <u@example.org>: Recipient address rejected: User unknown in "
	  "virtual mailbox table", "invalid_recipient" },
	{ 550, "5.1.1", "550 5.1.1 <u@example.org>: Recipient address rejected: User unknown in "
	  "local recipient table", "invalid_recipient" },
	{ 450, "4.2.0", "450 4.2.0 <u@example.org>: Recipient address rejected: Greylisted, see "
	  "http://postgrey.schweikert.ch/help/example.org.html", "greylisted" },
	{ 554, "5.7.1", "554 5.7.1 <u@example.net>: Relay access denied", "policy_related" },
	{ 530, "5.7.0", "530 5.7.0 Must issue a STARTTLS command first", "tls_required" },
	{ 552, "5.3.4", "552 5.3.4 Message size exceeds fixed limit", "message_too_big" },
	{ 550, "5.1.2", "550 5.1.2 <u@nowhere.example>: Recipient address rejected: Domain not found",
	  "bad_domain" },
	{ 556, "5.1.10", "556 5.1.10 Recipient address has null MX", "bad_domain" },
	{ 450, "4.7.1", "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.10]",
	  "other" },
	/* Exim, Exchange, others without enhanced codes */
	{ 550, NULL, "550 Unrouteable address", "other" },
	{ 550, NULL, "550 unrouteable mail domain \"nowhere.example\"", "bad_domain" },
	{ 550, NULL, "550 No such user here", "invalid_recipient" },
	{ 550, NULL, "550 Requested action not taken: mailbox unavailable, user unknown",
	  "invalid_recipient" },
	{ 552, NULL, "552 Requested mail action aborted: exceeded storage allocation; mailbox full",
	  "mailbox_full" },
	{ 421, NULL, "421 Too many concurrent SMTP connections; please try again later.",
	  "rate_limited" },
	{ 451, "4.7.1", "451 4.7.1 Please try again later, greylisting in effect", "greylisted" },
	{ 554, NULL, "554 Your access to this mail system has been rejected due to the sending MTA's "
	  "poor reputation.", "reputation" },
	{ 550, "5.7.1", "550 5.7.1 Message rejected as spam by Content Filtering.", "spam_related" },
	{ 550, "5.7.23", "550 5.7.23 The message was rejected because of Sender Policy Framework "
	  "violation", "auth_failure" },
	{ 554, NULL, "554 Transaction failed", "other" },
	{ 0, NULL, "connect 192.0.2.1:25: Connection refused", "other" },
	/* our resolver's permanent answers */
	{ 0, NULL, "DNS null_mx for retired.example: null MX (RFC 7505)", "bad_domain" },
	{ 0, NULL, "DNS nxdomain for nowhere.example: no such domain", "bad_domain" },
	{ 0, NULL, "DNS tempfail for slow.example: timeout", "other" },
};

static struct ctl_bounce *
shipped(void)
{
	char err[256] = "";
	struct ctl_bounce *b = ctl_bounce_new();
	int n = ctl_bounce_load_text(b, ctl_bounce_builtin, "rules.conf", err, sizeof(err));

	if (n <= 0)
		fprintf(stderr, "shipped rules: %d %s\n", n, err);
	CHECK(n > 40);
	return b;
}

static void
test_real_replies(void)
{
	struct ctl_bounce *b = shipped();

	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		const char *got = ctl_bounce_class_name(ctl_bounce_classify(b, vecs[i].code,
			vecs[i].esc, vecs[i].text));

		if (strcmp(got, vecs[i].want) != 0)
			fprintf(stderr, "vector %zu: %d %s \"%.70s\": %s, want %s\n", i, vecs[i].code,
				vecs[i].esc ? vecs[i].esc : "-", vecs[i].text, got, vecs[i].want);
		CHECK_STREQ(got, vecs[i].want);
	}
	ctl_bounce_free(b);
}

static void
test_syntax_and_errors(void)
{
	static const struct { const char *rule, *err; } bad[] = {
		{ "nosuch 550 5.1.1 *\n", "unknown class" },
		{ "other 650 * *\n", "bad code pattern" },
		{ "other 5 * *\n", "bad code pattern" },
		{ "other 5y0 * *\n", "bad code pattern" },
		{ "other 550 5.1 *\n", "bad enhanced code" },
		{ "other 550 7.1.1 *\n", "bad enhanced code" },
		{ "other 550 5.a.1 *\n", "bad enhanced code" },
		{ "other 550 5.1.1\n", "no text pattern" },
		{ "other 550 * (unclosed\n", "bad regular expression" },
	};
	char err[256];
	struct ctl_bounce *b = ctl_bounce_new();

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_EQ(ctl_bounce_load_text(b, bad[i].rule, "own", err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, bad[i].err) != NULL && strncmp(err, "own:1: ", 7) == 0);
	}
	CHECK_EQ(ctl_bounce_count(b), 0);
	/* a bad line later in a text: nothing of that text is kept, line named */
	CHECK_EQ(ctl_bounce_load_text(b, "# c\nother 5xx * *\n\nbogus\n", "f", err, sizeof(err)),
		-EINVAL);
	CHECK(strncmp(err, "f:4: ", 5) == 0);
	CHECK_EQ(ctl_bounce_count(b), 0);
	/* patterns: x digits, * components, * text, no code, no esc */
	CHECK_EQ(ctl_bounce_load_text(b,
		"  # indented comment\n"
		"greylisted 45x 4.*.1 *\n"
		"reputation xxx * listed\\s+here\n"
		"other * * *\n", "ok", err, sizeof(err)), 3);
	CHECK_EQ(ctl_bounce_classify(b, 451, "4.7.1", "x"), CTL_BC_GREYLISTED);
	CHECK_EQ(ctl_bounce_classify(b, 451, "4.7.2", "x"), CTL_BC_OTHER);
	CHECK_EQ(ctl_bounce_classify(b, 461, "4.7.1", "x"), CTL_BC_OTHER);
	CHECK_EQ(ctl_bounce_classify(b, 451, NULL, "x"), CTL_BC_OTHER);	/* needs an esc */
	CHECK_EQ(ctl_bounce_classify(b, 550, NULL, "you are LISTED  HERE"), CTL_BC_REPUTATION);
	CHECK_EQ(ctl_bounce_classify(b, 0, NULL, "listed here"), CTL_BC_OTHER);	/* no code */
	CHECK_EQ(ctl_bounce_classify(NULL, 550, "5.1.1", "x"), CTL_BC_OTHER);
	ctl_bounce_free(b);
}

/* An operator's file, read before the shipped rules, wins. */
static void
test_own_rules_first(void)
{
	char path[] = "/tmp/mp_bounce_XXXXXX", err[256];
	int fd = mkstemp(path);
	const char own[] = "# our relay says 'user unknown' when it is throttling us\n"
		"rate_limited 550 5.1.1 relay\\.example\n";
	struct ctl_bounce *b = ctl_bounce_new();

	CHECK(fd >= 0);
	CHECK_EQ(write(fd, own, sizeof(own) - 1), (long long)(sizeof(own) - 1));
	close(fd);
	CHECK_EQ(ctl_bounce_load_file(b, path, err, sizeof(err)), 1);
	CHECK(ctl_bounce_load_text(b, ctl_bounce_builtin, "rules.conf", err, sizeof(err)) > 40);
	CHECK_EQ(ctl_bounce_classify(b, 550, "5.1.1", "550 5.1.1 user unknown at relay.example"),
		CTL_BC_RATE_LIMITED);
	CHECK_EQ(ctl_bounce_classify(b, 550, "5.1.1", "550 5.1.1 user unknown"),
		CTL_BC_INVALID_RECIPIENT);
	unlink(path);
	CHECK_EQ(ctl_bounce_load_file(b, path, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, path) != NULL);
	ctl_bounce_free(b);
}

static void
test_names(void)
{
	enum ctl_bounce_class c;

	for (int i = 0; i < CTL_BC_LAST; i++) {
		CHECK_EQ(ctl_bounce_class_parse(ctl_bounce_class_name((enum ctl_bounce_class)i), &c), 0);
		CHECK_EQ(c, i);
		CHECK_EQ(ctl_bounce_class_is_address(c),
			c == CTL_BC_INVALID_RECIPIENT || c == CTL_BC_BAD_DOMAIN);
	}
	CHECK_EQ(ctl_bounce_class_parse("Other", &c), -EINVAL);
	CHECK_STREQ(ctl_bounce_class_name(CTL_BC_LAST), "?");
}

int
main(void)
{
	test_real_replies();
	test_syntax_and_errors();
	test_own_rules_first();
	test_names();
	return mp_test_result("ctl_bounce");
}
