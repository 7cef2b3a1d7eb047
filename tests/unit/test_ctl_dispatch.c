/*
 * The objects of the dispatch interface (include/ctl_dispatch.h): a
 * message is one self-contained block (its strings survive the caller's
 * buffers, values keep their length, bytes after a NUL included), the
 * campaign lives exactly as long as its last reference (the last message
 * or order freed, on either side), an order frees the messages it holds,
 * Message-ID indexes are stable per recipient, and a message renders from
 * the shared template without the scheduler's data.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_dispatch.h"
#include "mp_test.h"

static struct ctl_campaign *
camp(const char *id)
{
	struct msg_template_spec spec = {
		.from_addr = "news@sender.test",
		.subject = "Hi {{first}}",
		.text = "Hello {{first}}, code {{code|none}}\n",
	};
	char err[128];

	return ctl_campaign_new(id, "bounce@sender.test", &spec, err, sizeof(err));
}

int
main(void)
{
	struct ctl_campaign *c = camp("c-1"), *bad;
	struct msg_template_spec spec = { .from_addr = "a@b.test", .subject = "{{x" , .text = "t" };
	char err[128] = "", name[16], value[16], buf[4096];
	const char *names[2], *values[2];
	size_t lens[2];
	struct ctl_msg *m, *m2;
	struct ctl_order *o;
	struct msg_render r;
	struct msg_fields f;
	ssize_t n, total = 0;

	CHECK(c != NULL);
	if (c == NULL)
		return mp_test_result("ctl_dispatch");
	CHECK_EQ(c->refcnt, 1);
	CHECK_STREQ(c->mail_from, "bounce@sender.test");
	CHECK(ctl_campaign_new("bad id", "a@b.test", &spec, err, sizeof(err)) == NULL);
	bad = ctl_campaign_new("c-2", "a@b.test", &spec, err, sizeof(err));
	CHECK(bad == NULL);
	CHECK(strstr(err, "subject") != NULL);

	/* the message copies everything it points to */
	strcpy(name, "first");
	memcpy(value, "Ann\0x", 5);
	names[0] = name;
	values[0] = value;
	lens[0] = 5;
	names[1] = "code";
	values[1] = "42";
	lens[1] = 2;
	m = ctl_msg_new(c, "ann@example.test", names, values, lens, 2);
	CHECK(m != NULL);
	memset(name, 'X', sizeof(name));
	memset(value, 'X', sizeof(value));
	CHECK_EQ(c->refcnt, 2);
	CHECK_STREQ(m->rcpt, "ann@example.test");
	CHECK_EQ(m->nfields, 2);
	CHECK_STREQ(m->fields[0].name, "first");
	CHECK_EQ(m->fields[0].len, 5);
	CHECK(memcmp(m->fields[0].value, "Ann\0x", 5) == 0);
	CHECK_STREQ(m->fields[1].value, "42");
	CHECK_EQ(m->index, ctl_hash64("ann@example.test"));
	CHECK(ctl_hash64("ann@example.test") != ctl_hash64("bob@example.test"));
	CHECK_EQ(ctl_hash64(""), 0xcbf29ce484222325ull);

	/* renders from the campaign alone (code given, first without NUL) */
	strcpy(name, "first");
	lens[0] = 3;
	memcpy(value, "Ann", 3);
	m2 = ctl_msg_new(c, "bob@example.test", names, values, lens, 2);
	f.v = m2->fields;
	f.n = m2->nfields;
	f.msgid_token = NULL;
	f.index = m2->index;
	CHECK_EQ(msg_render_open(&r, m2->camp->tpl, m2->rcpt, &f, 0, 0, err, sizeof(err)), 0);
	while ((n = msg_render_read(&r, buf + total, sizeof(buf) - 1 - (size_t)total)) > 0)
		total += n;
	buf[total] = '\0';
	CHECK(strstr(buf, "Subject: Hi Ann\r\n") != NULL);
	CHECK(strstr(buf, "Hello Ann, code 42\r\n") != NULL);
	CHECK(strstr(buf, "To: bob@example.test") != NULL || strstr(buf, "<bob@example.test>") != NULL);

	/* an order owns its messages; the campaign outlives the scheduler's ref */
	o = ctl_order_new(4);
	CHECK(o != NULL);
	o->msgs[o->n_msgs++] = m;
	o->msgs[o->n_msgs++] = m2;

	/* the envelope sender: the campaign's, or with VERP one per recipient */
	{
		struct smtp_config base;
		struct smtp_txn txn;
		struct mps_req req;
		struct ctl_order_run run;

		smtp_config_defaults(&base);
		ctl_order_run_init(&run, o, &base, &req);
		CHECK_EQ(ctl_order_run_next_txn(&run, &txn), 0);
		CHECK_STREQ(txn.mail_from, "bounce@sender.test");
		c->verp = 1;
		CHECK_EQ(ctl_order_run_next_txn(&run, &txn), 0);
		CHECK_STREQ(txn.mail_from, "bounce+bob=example.test@sender.test");
		CHECK_STREQ(txn.rcpt[0], "bob@example.test");
		CHECK_EQ(ctl_order_run_next_txn(&run, &txn), -ENOENT);
		c->verp = 0;
	}
	CHECK_EQ(c->refcnt, 3);
	ctl_campaign_unref(c);		/* the scheduler drops the campaign */
	CHECK_EQ(m->camp->refcnt, 2);
	CHECK_STREQ(m->camp->id, "c-1");
	ctl_order_free(o);		/* last references: campaign freed (ASan) */

	/* VERP addresses: the recipient's '@' becomes '=' after a '+' */
	{
		char v[256], big[80];

		CHECK_EQ(ctl_verp_address("bounces@mail.example.com", "Ann.Lee@example.org",
			v, sizeof(v)), 0);
		CHECK_STREQ(v, "bounces+Ann.Lee=example.org@mail.example.com");
		CHECK_EQ(ctl_verp_address("b@x.test", "a@y.test", v, sizeof(v)), 0);
		CHECK_STREQ(v, "b+a=y.test@x.test");
		/* a local part over 64 octets: refused, the plain return path is used */
		memset(big, 'a', 50);
		strcpy(big + 50, "@example.org");
		CHECK_EQ(ctl_verp_address("bounces@x.test", big, v, sizeof(v)), -E2BIG);
		big[45] = '\0';	/* 45 a's, no domain: not an address */
		CHECK_EQ(ctl_verp_address("bounces@x.test", big, v, sizeof(v)), -EINVAL);
		CHECK_EQ(ctl_verp_address("bounces", "a@y.test", v, sizeof(v)), -EINVAL);
		CHECK_EQ(ctl_verp_address("b@x.test", "a@y.test", v, 10), -E2BIG);
	}
	ctl_order_free(NULL);
	ctl_msg_free(NULL);
	ctl_campaign_unref(NULL);
	return mp_test_result("ctl_dispatch");
}
