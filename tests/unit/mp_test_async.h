/*
 * An emulated asynchronous crypto provider for tests that drive tls_
 * through its test_pause_hook. Call order: the hook, running inside the
 * OpenSSL ASYNC job of a handshake, calls mp_async_prov_pause(); that arms
 * one of the two ways a provider tells the application it is done (a wait
 * fd, here an eventfd, or the wait ctx's ready callback) and pauses the
 * job, so tls_ reports the connection paused. The "crypto" then answers:
 * the test calls mp_async_prov_signal() itself, or, with later_ms set, a
 * helper thread does so that long after the pause. The application resumes
 * the job, mp_async_prov_pause() returns (dropping the wait fd) and the
 * test joins the helper with mp_async_prov_join(). A struct pauses one job
 * once; later calls return at once. Header-only, like mp_test.h.
 */
#ifndef MP_TEST_ASYNC_H
#define MP_TEST_ASYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/async.h>

struct mp_async_prov {
	/* set by the test before the pause */
	int use_fd;		/* signal through a wait fd, else the ready callback */
	unsigned later_ms;	/* > 0: a helper thread signals this long after the pause */
	/* set by the provider */
	atomic_int paused, resumed;
	int efd;
	ASYNC_callback_fn cb;
	void *cbarg;
	pthread_t th;
	int th_started;
};

/* Completes the pending job: one eventfd write, or one ready callback. */
static inline void
mp_async_prov_signal(struct mp_async_prov *ap)
{
	uint64_t one = 1;

	if (ap->use_fd) {
		if (write(ap->efd, &one, sizeof(one)) != sizeof(one))
			perror("eventfd write");
	} else if (ap->cb != NULL) {
		ap->cb(ap->cbarg);
	}
}

static inline void *
mp_async_prov_thread(void *arg)
{
	struct mp_async_prov *ap = arg;

	/* The stimulus: the crypto answers later_ms after the pause. Nothing
	 * may assert on how long the job stayed paused. */
	usleep(ap->later_ms * 1000u);
	mp_async_prov_signal(ap);
	return NULL;
}

/* From inside the job (a test_pause_hook): arm the signal and pause until
 * the application resumes the job. Outside a job, or once paused, a no-op. */
static inline void
mp_async_prov_pause(struct mp_async_prov *ap)
{
	static const int key;
	ASYNC_JOB *job = ASYNC_get_current_job();
	ASYNC_WAIT_CTX *w;

	if (job == NULL || atomic_load(&ap->paused))
		return;
	w = ASYNC_get_wait_ctx(job);
	if (ap->use_fd) {
		ap->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ASYNC_WAIT_CTX_set_wait_fd(w, &key, ap->efd, NULL, NULL);
	} else {
		ASYNC_WAIT_CTX_get_callback(w, &ap->cb, &ap->cbarg);
	}
	atomic_store(&ap->paused, 1);
	if (ap->later_ms > 0) {
		if (pthread_create(&ap->th, NULL, mp_async_prov_thread, ap) == 0)
			ap->th_started = 1;
		else
			perror("mp_async_prov: pthread_create");
	}
	ASYNC_pause_job();
	atomic_store(&ap->resumed, 1);
	if (ap->use_fd) {
		w = ASYNC_get_wait_ctx(ASYNC_get_current_job());
		ASYNC_WAIT_CTX_clear_fd(w, &key);
		close(ap->efd);
	}
}

/* Waits for the helper thread, if one was started. */
static inline void
mp_async_prov_join(struct mp_async_prov *ap)
{
	if (ap->th_started)
		pthread_join(ap->th, NULL);
	ap->th_started = 0;
}

#endif
