/*
 * Minimal unit-test helpers: CHECK records a failure with file:line and
 * goes on; a test program returns mp_test_result() from main, which prints
 * "N passed, N failed" and exits non-zero on any failure.
 */
#ifndef MP_TEST_H
#define MP_TEST_H

#include <stdio.h>
#include <string.h>

static int mp_test_pass;
static int mp_test_fail;

#define CHECK(cond) do { \
	if (cond) { \
		mp_test_pass++; \
	} else { \
		mp_test_fail++; \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

#define CHECK_EQ(a, b) do { \
	long long va_ = (long long)(a), vb_ = (long long)(b); \
	if (va_ == vb_) { \
		mp_test_pass++; \
	} else { \
		mp_test_fail++; \
		fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
			__FILE__, __LINE__, #a, va_, #b, vb_); \
	} \
} while (0)

#define CHECK_STREQ(a, b) do { \
	const char *sa_ = (a), *sb_ = (b); \
	if (sa_ != NULL && sb_ != NULL && strcmp(sa_, sb_) == 0) { \
		mp_test_pass++; \
	} else { \
		mp_test_fail++; \
		fprintf(stderr, "%s:%d: CHECK_STREQ failed: \"%s\" vs \"%s\"\n", \
			__FILE__, __LINE__, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)"); \
	} \
} while (0)

#define CHECK_MEMEQ(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

static inline int
mp_test_result(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, mp_test_pass, mp_test_fail);
	return mp_test_fail == 0 ? 0 : 1;
}

#endif
