/*
 * Logging for code that runs without DPDK (engine, control plane, tools).
 * key=value lines on stderr; one component name per caller. The DPDK side
 * logs through RTE_LOG with its own registered types instead.
 */
#ifndef MP_LOG_H
#define MP_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum mp_log_level {
	MP_LOG_ERR = 0,
	MP_LOG_WARN,
	MP_LOG_INFO,
	MP_LOG_DEBUG,
	MP_LOG_LAST
};

/** Messages above this level are dropped (default MP_LOG_WARN; env MP_LOG_LEVEL=debug|info|warn|err). */
extern int mp_log_level;

void mp_log_set_level(int level);
/** Parse "err", "warn", "info", "debug"; @return level or -1. */
int mp_log_level_parse(const char *name);

void mp_log(int level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/**
 * Format an error message into a caller's buffer (the "char *err, size_t
 * errlen" pair that constructors and parsers take). NULL or 0: nothing.
 */
void mp_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void mp_verrf(char *err, size_t errlen, const char *fmt, va_list ap);

#define MP_LOG(level, comp, ...) do { \
	if ((level) <= mp_log_level) \
		mp_log((level), (comp), __VA_ARGS__); \
} while (0)

#endif
