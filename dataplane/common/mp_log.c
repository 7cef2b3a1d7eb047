/*
 * stderr logger for the DPDK-free parts. Level from MP_LOG_LEVEL at first
 * use or mp_log_set_level(). One line per call, prefixed with a monotonic
 * timestamp, the level and the component.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mp_log.h"

int mp_log_level = MP_LOG_WARN;

static const char *const level_names[MP_LOG_LAST] = {
	"err", "warn", "info", "debug",
};

int
mp_log_level_parse(const char *name)
{
	for (int i = 0; i < MP_LOG_LAST; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

void
mp_log_set_level(int level)
{
	if (level >= 0 && level < MP_LOG_LAST)
		mp_log_level = level;
}

__attribute__((constructor)) static void
mp_log_init_env(void)
{
	const char *env = getenv("MP_LOG_LEVEL");
	int l;

	if (env != NULL && (l = mp_log_level_parse(env)) >= 0)
		mp_log_level = l;
}

void
mp_log(int level, const char *component, const char *fmt, ...)
{
	struct timespec ts;
	char line[1024];
	va_list ap;
	int n;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	n = snprintf(line, sizeof(line), "%ld.%03ld %s %s: ", (long)ts.tv_sec,
		ts.tv_nsec / 1000000, level >= 0 && level < MP_LOG_LAST ?
		level_names[level] : "?", component);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

void
mp_verrf(char *err, size_t errlen, const char *fmt, va_list ap)
{
	if (err == NULL || errlen == 0)
		return;
	vsnprintf(err, errlen, fmt, ap);
}

void
mp_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mp_verrf(err, errlen, fmt, ap);
	va_end(ap);
}
