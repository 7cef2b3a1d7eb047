/*
 * U-labels to A-labels for domains and the domain part of addresses,
 * through libidn2's idn2_lookup_u8() (IDNA2008 with the UTS #46 mapping,
 * NFC first). Only names with a byte >= 0x80 are converted: an ASCII
 * name, "xn--" labels included, is already what DNS and SMTP want.
 */
#include <errno.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_idn.h"

static int
ascii(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s >= 0x80)
			return 0;
	}
	return 1;
}

int
ctl_idn_domain(const char *in, char *out, size_t cap, char *err, size_t errlen)
{
	uint8_t *a = NULL;
	int rc;

	if (ascii(in)) {
		if (strlen(in) >= cap)
			return -ENAMETOOLONG;
		memmove(out, in, strlen(in) + 1);	/* out may be in */
		return 0;
	}
	rc = idn2_lookup_u8((const uint8_t *)in, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK) {
		if (err != NULL)
			snprintf(err, errlen, "%s", idn2_strerror(rc));
		return -EINVAL;
	}
	rc = strlen((char *)a) < cap ? 0 : -ENAMETOOLONG;
	if (rc == 0)
		memcpy(out, a, strlen((char *)a) + 1);
	idn2_free(a);
	return rc;
}

int
ctl_idn_addr(const char *addr, char *out, size_t cap)
{
	const char *at = strrchr(addr, '@');
	char dom[256];
	size_t lp;

	if (at == NULL || ascii(at + 1) ||
	    ctl_idn_domain(at + 1, dom, sizeof(dom), NULL, 0) < 0)
		return -EINVAL;
	lp = (size_t)(at + 1 - addr);
	if (lp + strlen(dom) >= cap)
		return -EINVAL;
	memcpy(out, addr, lp);
	memcpy(out + lp, dom, strlen(dom) + 1);
	return 0;
}
