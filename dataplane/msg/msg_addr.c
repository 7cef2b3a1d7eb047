/*
 * Address syntax (RFC 5321 Mailbox, RFC 6531 with SMTPUTF8) and the UTF-8
 * and character-class helpers the rest of msg_ uses. msg_addr_valid is
 * called by the control plane on submit and by msg_render_open on each
 * recipient; it checks syntax only, never DNS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "msg_int.h"

size_t
msg_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len, i;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

size_t
msg_utf8_check(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, l;

	while (i < n) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		l = msg_utf8_seq(u + i, n - i);
		if (l == 0)
			return i;
		i += l;
	}
	return n;
}

bool
msg_is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

bool
msg_has_nonascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* dot-atom (atext, or UTF-8 when utf8): no leading/trailing/double dot */
static bool
addr_dot_atom(const char *s, size_t n, bool utf8)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, l;

	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	while (i < n) {
		if (u[i] == '.') {
			if (u[i + 1] == '.')
				return false;
			i++;
		} else if (u[i] < 0x80) {
			if (!msg_is_atext(u[i]))
				return false;
			i++;
		} else {
			if (!utf8 || (l = msg_utf8_seq(u + i, n - i)) == 0)
				return false;
			i += l;
		}
	}
	return true;
}

/* quoted-string: qtextSMTP %d32-33 / %d35-91 / %d93-126, "\" %d32-126 */
static bool
addr_quoted(const char *s, size_t n, bool utf8)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i, l;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return false;
	for (i = 1; i < n - 1;) {
		if (u[i] == '\\') {
			if (i + 1 >= n - 1 || u[i + 1] < 32 || u[i + 1] > 126)
				return false;
			i += 2;
		} else if (u[i] == '"' || u[i] < 32 || u[i] == 127) {
			return false;
		} else if (u[i] >= 0x80) {
			if (!utf8 || (l = msg_utf8_seq(u + i, n - 1 - i)) == 0)
				return false;
			i += l;
		} else {
			i++;
		}
	}
	return true;
}

bool
msg_domain_labels(const char *s, size_t n, bool utf8)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, lab = 0, l;

	while (i < n) {
		if (u[i] == '.') {
			/* empty label, label ending with '-' */
			if (lab == 0 || u[i - 1] == '-')
				return false;
			lab = 0;
			i++;
			continue;
		}
		if (u[i] == '-' && lab == 0)
			return false;
		if (u[i] >= 0x80) {
			if (!utf8 || (l = msg_utf8_seq(u + i, n - i)) == 0)
				return false;
		} else {
			if (!((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
			      (u[i] >= '0' && u[i] <= '9') || u[i] == '-'))
				return false;
			l = 1;
		}
		i += l;
		lab += l;
		if (lab > 63)
			return false;
	}
	return lab > 0 && u[n - 1] != '-';
}

static bool
addr_domain(const char *s, size_t n, bool utf8)
{
	char tmp[64];

	if (n == 0 || n > 255)
		return false;
	if (s[0] == '[') {
		if (s[n - 1] != ']')
			return false;
		if (n > 7 && strncasecmp(s + 1, "IPv6:", 5) == 0) {
			struct in6_addr a6;

			if (n - 7 >= sizeof(tmp))
				return false;
			memcpy(tmp, s + 6, n - 7);
			tmp[n - 7] = '\0';
			return inet_pton(AF_INET6, tmp, &a6) == 1;
		} else {
			struct in_addr a4;

			if (n - 2 >= 16)
				return false;
			memcpy(tmp, s + 1, n - 2);
			tmp[n - 2] = '\0';
			return inet_pton(AF_INET, tmp, &a4) == 1;
		}
	}
	return msg_domain_labels(s, n, utf8);
}

int
msg_addr_valid(const char *addr, unsigned flags)
{
	bool utf8 = (flags & MSG_F_SMTPUTF8) != 0;
	size_t n, at;
	const char *p;

	if (addr == NULL)
		return -EINVAL;
	n = strnlen(addr, 256);
	if (n == 0 || n > 254)
		return -EINVAL;
	/* the local part's "@" is the last one: quoted local parts may hold "@" */
	p = strrchr(addr, '@');
	if (p == NULL)
		return -EINVAL;
	at = (size_t)(p - addr);
	if (at == 0 || at > 64)
		return -EINVAL;
	if (addr[0] == '"') {
		if (!addr_quoted(addr, at, utf8))
			return -EINVAL;
	} else if (!addr_dot_atom(addr, at, utf8)) {
		return -EINVAL;
	}
	if (!addr_domain(p + 1, n - at - 1, utf8))
		return -EINVAL;
	return 0;
}
