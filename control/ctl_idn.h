/*
 * Internationalised domain names (ctl_idn): a domain in U-labels
 * ("bücher.example") to the A-labels DNS and SMTP servers without
 * SMTPUTF8 understand ("xn--bcher-kva.example"), with libidn2 (IDNA2008,
 * UTS #46 non-transitional). Submit validates with it, the scheduler looks
 * up and addresses RCPT TO under the A-label form (README, "IDN").
 */
#ifndef CTL_IDN_H
#define CTL_IDN_H

#include <stddef.h>

/**
 * @p in as A-labels, lower-case, into @p out. An all-ASCII name is copied
 * unchanged (it is checked elsewhere).
 * @return 0, -EINVAL (not a valid IDN: @p err says why), -ENAMETOOLONG
 */
int ctl_idn_domain(const char *in, char *out, size_t cap, char *err, size_t errlen);

/**
 * @p addr with the domain after its last '@' as A-labels, into @p out.
 * @return 0, or -EINVAL when there is nothing to convert or it does not
 *         convert (@p out untouched)
 */
int ctl_idn_addr(const char *addr, char *out, size_t cap);

#endif
