/*
 * Names of the Redis keys, fields, states and groups of the control-plane
 * contract (README.md, "Redis contract"). Every key is the namespace
 * (default "mp:") followed by one of the CTL_K_* suffixes below; build
 * full names with ctl_redis_key() so the namespace is never forgotten.
 * Suffixes with "%s" take a campaign id or a domain. Nothing here talks to
 * Redis: the header is the single place where the schema's spelling lives.
 */
#ifndef CTL_KEYS_H
#define CTL_KEYS_H

#include <string.h>

#define CTL_NS_DEFAULT      "mp:"
#define CTL_KEY_MAX         512   /* longest full key name we build */
#define CTL_ID_MAX          63    /* campaign id length: fits CTL_CAMP_ID_MAX with NUL */

/* key suffixes (prefix them with the namespace) */
#define CTL_K_CAMPAIGNS     "campaigns"          /* ZSET created_ms -> id */
#define CTL_K_CAMPAIGN      "campaign:%s"        /* HASH campaign definition + state */
#define CTL_K_RCPT          "campaign:%s:rcpt"   /* HASH address -> JSON state */
#define CTL_K_COUNTS        "campaign:%s:counts" /* HASH state -> count */
#define CTL_K_JOBS          "jobs"               /* STREAM of batches (shared, for third-party writers) */
#define CTL_K_CJOBS         "campaign:%s:jobs"   /* STREAM of one campaign's batches */
#define CTL_K_ACTIVE        "active"             /* SET of campaign ids whose jobs stream daemons read */
#define CTL_K_JOBS_DEAD     "jobs:dead"          /* STREAM of poison jobs entries + reason */
#define CTL_K_JOBS_DEAD_N   "jobs:dead:count"    /* STRING entries ever dead-lettered */
#define CTL_K_RETRY         "retry"              /* ZSET due_ms -> JSON recipient */
#define CTL_K_EVENTS        "events"             /* STREAM of recipient state changes */
#define CTL_K_TLS           "tls:%s"             /* HASH per-domain TLS counters */
#define CTL_K_TLS_DOMAINS   "tls:domains"        /* SET of domains with a tls: hash */
#define CTL_K_CONSUMER      "consumer:%s"        /* STRING: the token of the daemon using that name, PX TTL */
#define CTL_K_DKIM          "dkim"               /* HASH: the daemons' [dkim] (mode, domains) */
#define CTL_K_SUPPRESS      "suppress:%s"        /* HASH per sender domain: address -> JSON */

/* the consumer group on CTL_K_JOBS */
#define CTL_GROUP           "mailpump"
#define CTL_EVENTS_MAXLEN   "1000000"            /* XADD events MAXLEN ~ */
#define CTL_BATCH_DEFAULT   100                  /* recipients per jobs entry */
#define CTL_MAX_AGE_DEFAULT 432000               /* seconds (5 days) */
#define CTL_RETENTION_DEFAULT 2592000            /* seconds (30 days) after done */
#define CTL_CLAIM_IDLE_MS   60000                /* XAUTOCLAIM min-idle */
#define CTL_DEAD_MAXLEN     100000               /* XADD jobs:dead MAXLEN ~ */
/* merge fields per recipient: what submit accepts is what dispatch passes */
#define CTL_RCPT_FIELDS_MAX 256

/* fields of a CTL_K_CAMPAIGN hash */
#define CTL_F_ID            "id"
#define CTL_F_FROM          "from"
#define CTL_F_FROM_NAME     "from_name"
#define CTL_F_REPLY_TO      "reply_to"
#define CTL_F_RETURN_PATH   "return_path"        /* MAIL FROM; "" = from */
#define CTL_F_VERP          "verp"               /* "1": per-recipient return path */
#define CTL_F_DKIM_DOMAIN   "dkim_domain"        /* DKIM d=; "" = the From domain */
#define CTL_F_SUBJECT       "subject"
#define CTL_F_TEXT          "text"
#define CTL_F_HTML          "html"
#define CTL_F_HEADERS       "headers"            /* JSON object name -> value */
#define CTL_F_UNSUB         "unsubscribe"
#define CTL_F_TLS_POLICY    "tls_policy"
#define CTL_F_TLS_OVERRIDES "tls_overrides"      /* JSON object domain -> policy */
#define CTL_F_FB_SUBJECT    "fallback_subject"   /* safe-content fallback ("" = none) */
#define CTL_F_FB_TEXT       "fallback_text"
#define CTL_F_FB_HTML       "fallback_html"
#define CTL_F_FB_POLICY     "fallback_tls_policy" /* none|opportunistic */
#define CTL_F_WINDOW        "window"             /* "HH:MM-HH:MM" UTC or "" */
#define CTL_F_PRIORITY      "priority"           /* transactional, normal (default), bulk */
#define CTL_F_MAX_AGE       "max_age_s"
#define CTL_F_RETENTION     "retention_s"        /* keys expire this long after done/cancelled; 0 = never */
#define CTL_F_EXPIRES_MS    "expires_ms"         /* set with that TTL: when they go */
#define CTL_F_STATE         "state"
#define CTL_F_CREATED       "created_ms"
#define CTL_F_SUBMITTED     "submitted_ms"       /* set when submission ended */
#define CTL_F_DONE_MS       "done_ms"            /* set with state=done */
#define CTL_F_TOTAL         "total"
#define CTL_F_INVALID       "invalid"
#define CTL_F_DUPS          "duplicates_skipped"
#define CTL_F_SUPPRESSED    "suppressed"         /* skipped at submit: not in total */

/* fields of a CTL_K_JOBS entry */
#define CTL_J_CAMPAIGN      "campaign"
#define CTL_J_DOMAIN        "domain"
#define CTL_J_ATTEMPT       "attempt"
#define CTL_J_RCPTS         "rcpts"

/* extra fields of a CTL_K_COUNTS hash (besides one per recipient state) */
#define CTL_C_DUP_DELIVERIES "dup_deliveries"
#define CTL_C_ATTEMPTS       "attempts"

/* Campaign states (field "state"). */
enum ctl_camp_state {
	CTL_CAMP_SUBMITTING = 0,  /* recipients still being added; dispatchable */
	CTL_CAMP_RUNNING,         /* submission finished; dispatchable */
	CTL_CAMP_PAUSED,          /* its jobs stream is not read; held batches wait */
	CTL_CAMP_CANCELLED,       /* remaining recipients finalised as cancelled */
	CTL_CAMP_DONE,            /* every recipient final (set only from running) */
	CTL_CAMP_LAST
};

static inline const char *
ctl_camp_state_name(enum ctl_camp_state s)
{
	switch (s) {
	case CTL_CAMP_SUBMITTING: return "submitting";
	case CTL_CAMP_RUNNING:    return "running";
	case CTL_CAMP_PAUSED:     return "paused";
	case CTL_CAMP_CANCELLED:  return "cancelled";
	case CTL_CAMP_DONE:       return "done";
	case CTL_CAMP_LAST:       break;
	}
	return "?";
}

/** @return the state named s, or CTL_CAMP_LAST if s names none. */
static inline enum ctl_camp_state
ctl_camp_state_parse(const char *s)
{
	int i;

	for (i = 0; i < CTL_CAMP_LAST; i++)
		if (s != NULL && strcmp(s, ctl_camp_state_name((enum ctl_camp_state)i)) == 0)
			return (enum ctl_camp_state)i;
	return CTL_CAMP_LAST;
}

/* Campaign priorities (field "priority"): transactional is served
 * before normal before bulk, by weight (ctl_intake.c), none starved. */
enum ctl_prio {
	CTL_PRIO_TX = 0,
	CTL_PRIO_NORMAL,
	CTL_PRIO_BULK,
	CTL_PRIO_LAST
};

static inline const char *
ctl_prio_name(enum ctl_prio p)
{
	switch (p) {
	case CTL_PRIO_TX:     return "transactional";
	case CTL_PRIO_NORMAL: return "normal";
	case CTL_PRIO_BULK:   return "bulk";
	case CTL_PRIO_LAST:   break;
	}
	return "?";
}

/** @return the priority named s ("" or NULL: normal), or CTL_PRIO_LAST. */
static inline enum ctl_prio
ctl_prio_parse(const char *s)
{
	int i;

	if (s == NULL || s[0] == '\0')
		return CTL_PRIO_NORMAL;
	for (i = 0; i < CTL_PRIO_LAST; i++)
		if (strcmp(s, ctl_prio_name((enum ctl_prio)i)) == 0)
			return (enum ctl_prio)i;
	return CTL_PRIO_LAST;
}

/* Recipient states (the "state" of a CTL_K_RCPT value, and the
 * CTL_K_COUNTS fields). Final: delivered, bounced, failed, cancelled,
 * delivered_fallback (the campaign's safe-content fallback went out
 * instead of the message, README "Safe-content fallback"). */
enum ctl_rcpt_state {
	CTL_RCPT_QUEUED = 0,
	CTL_RCPT_DEFERRED,
	CTL_RCPT_DELIVERED,
	CTL_RCPT_BOUNCED,
	CTL_RCPT_FAILED,
	CTL_RCPT_CANCELLED,
	CTL_RCPT_DELIVERED_FALLBACK,
	CTL_RCPT_LAST
};

static inline const char *
ctl_rcpt_state_name(enum ctl_rcpt_state s)
{
	switch (s) {
	case CTL_RCPT_QUEUED:    return "queued";
	case CTL_RCPT_DEFERRED:  return "deferred";
	case CTL_RCPT_DELIVERED: return "delivered";
	case CTL_RCPT_BOUNCED:   return "bounced";
	case CTL_RCPT_FAILED:    return "failed";
	case CTL_RCPT_CANCELLED: return "cancelled";
	case CTL_RCPT_DELIVERED_FALLBACK: return "delivered_fallback";
	case CTL_RCPT_LAST:      break;
	}
	return "?";
}

/** @return the state named s, or CTL_RCPT_LAST if s names none. */
static inline enum ctl_rcpt_state
ctl_rcpt_state_parse(const char *s)
{
	int i;

	for (i = 0; i < CTL_RCPT_LAST; i++)
		if (s != NULL && strcmp(s, ctl_rcpt_state_name((enum ctl_rcpt_state)i)) == 0)
			return (enum ctl_rcpt_state)i;
	return CTL_RCPT_LAST;
}

static inline int
ctl_rcpt_state_final(enum ctl_rcpt_state s)
{
	return s == CTL_RCPT_DELIVERED || s == CTL_RCPT_BOUNCED ||
	       s == CTL_RCPT_FAILED || s == CTL_RCPT_CANCELLED ||
	       s == CTL_RCPT_DELIVERED_FALLBACK;
}

#endif
