/*
 * The daemon's configuration file: INI-style sections of "key = value"
 * lines, read once at start-up into memory, then queried by the modules
 * that own each key. Every key a module reads is marked used; whatever is
 * left unused afterwards is an unknown key and the daemon refuses to
 * start, naming it, before it touches the NIC.
 *
 *   # comment (also after whitespace, never inside a value: values may
 *   # hold '#', e.g. a password; use a full-line comment instead)
 *   [section]
 *   key = value            leading/trailing blanks trimmed; "" quotes keep them
 *   [routes]               sections whose keys are data (domains) are
 *   example.com = ...      walked with ctl_conf_each()
 *
 * Call order: ctl_conf_load() or ctl_conf_parse(), ctl_conf_set() for
 * command-line overrides, the getters, ctl_conf_check_unused(),
 * ctl_conf_free(). Every error message starts with "file:line: [section]
 * key:" so an operator knows where to look.
 */
#ifndef CTL_CONF_H
#define CTL_CONF_H

#include <stddef.h>
#include <stdint.h>

struct ctl_conf;

/** One "key = value" of a section, for ctl_conf_each(). */
struct ctl_conf_item {
	const char *section;
	const char *key;
	const char *value;
	unsigned line;          /**< 0 for a command-line override */
};

/**
 * Parse a configuration file.
 * @param path file to read
 * @param err receives "path:line: reason" on failure
 * @return the configuration, or NULL (unreadable file, syntax error:
 *         line outside a section, missing '=', empty key, duplicate key,
 *         bad section header, line longer than 4 KiB, no memory).
 */
struct ctl_conf *ctl_conf_load(const char *path, char *err, size_t errlen);

/** Like ctl_conf_load() from a string; @p name is used in messages. */
struct ctl_conf *ctl_conf_parse(const char *text, const char *name,
	char *err, size_t errlen);

/** An empty configuration (no file given: every key takes its default). */
struct ctl_conf *ctl_conf_new(void);

void ctl_conf_free(struct ctl_conf *cf);

/**
 * Set or replace a key (command-line override: "--set section.key=value"
 * or a dedicated flag). @return 0 or -ENOMEM.
 */
int ctl_conf_set(struct ctl_conf *cf, const char *section, const char *key,
	const char *value);

/**
 * Parse "section.key=value" (the part before the first '.' is the
 * section) and set it. @return 0, -EINVAL (with @p err) or -ENOMEM.
 */
int ctl_conf_set_arg(struct ctl_conf *cf, const char *arg, char *err,
	size_t errlen);

/** @return the value of section.key (marking it used), or NULL. */
const char *ctl_conf_get(struct ctl_conf *cf, const char *section,
	const char *key);

/** The value or @p def. */
const char *ctl_conf_get_str(struct ctl_conf *cf, const char *section,
	const char *key, const char *def);

/**
 * An unsigned integer in [min, max] with an optional unit suffix for
 * durations when @p ms is set ("250ms", "30s", "5m", "2h", "7d"; a bare
 * number is milliseconds). Absent: *out = def.
 * @return 0, or -EINVAL with @p err "where: [section] key: reason".
 */
int ctl_conf_get_uint(struct ctl_conf *cf, const char *section,
	const char *key, uint64_t min, uint64_t max, uint64_t def,
	uint64_t *out, char *err, size_t errlen);

/** Duration in milliseconds (see ctl_conf_get_uint). */
int ctl_conf_get_ms(struct ctl_conf *cf, const char *section,
	const char *key, uint64_t min, uint64_t max, uint64_t def,
	uint64_t *out, char *err, size_t errlen);

/** yes/no/true/false/on/off/1/0. @return 0 or -EINVAL with @p err. */
int ctl_conf_get_bool(struct ctl_conf *cf, const char *section,
	const char *key, int def, int *out, char *err, size_t errlen);

/**
 * One of @p names (NULL-terminated); *out = its index.
 * @return 0 or -EINVAL with @p err listing the accepted names.
 */
int ctl_conf_get_enum(struct ctl_conf *cf, const char *section,
	const char *key, const char *const *names, int def, int *out,
	char *err, size_t errlen);

/**
 * Call @p fn for every key of @p section in file order, marking each used;
 * stops at the first non-zero return, which is returned.
 */
int ctl_conf_each(struct ctl_conf *cf, const char *section,
	int (*fn)(void *arg, const struct ctl_conf_item *it), void *arg);

/**
 * Format "where: [section] key: " for a caller's own validation message.
 * @return @p buf.
 */
char *ctl_conf_where(struct ctl_conf *cf, const char *section,
	const char *key, char *buf, size_t len);

/**
 * @return 0 when every key was read by some module, or -ENOENT with
 *         @p err naming the first unknown one ("file:7: [tls] min_versoin:
 *         unknown key").
 */
int ctl_conf_check_unused(const struct ctl_conf *cf, char *err, size_t errlen);

#endif
