/*
 * mp-cpurun: run a command and write what it cost as one JSON object:
 * wall-clock start and end (Unix seconds), user and system CPU seconds of
 * the command and every child it waited for, and its peak resident set
 * (ru_maxrss of the children, KiB). The benchmark wraps each contender's
 * sender process in it, so CPU per message is measured the same way for
 * every contender that is a single process tree.
 *
 *   mp-cpurun OUT.json -- COMMAND [ARGS...]
 * Exits with the command's status (128+signal when it was killed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
real_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	struct rusage ru;
	double t0, t1;
	pid_t pid;
	int st, rc;
	FILE *f;

	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: mp-cpurun OUT.json -- COMMAND [ARGS...]\n");
		return 1;
	}
	t0 = real_s();
	pid = fork();
	if (pid < 0) {
		perror("mp-cpurun: fork");
		return 1;
	}
	if (pid == 0) {
		execvp(argv[3], argv + 3);
		fprintf(stderr, "mp-cpurun: exec %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			perror("mp-cpurun: waitpid");
			return 1;
		}
	}
	t1 = real_s();
	getrusage(RUSAGE_CHILDREN, &ru);
	rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	f = fopen(argv[1], "w");
	if (f == NULL) {
		perror(argv[1]);
		return 1;
	}
	fprintf(f, "{\"start_ts\":%.6f,\"end_ts\":%.6f,\"user_s\":%.3f,\"sys_s\":%.3f,"
		"\"maxrss_kib\":%ld,\"exit\":%d}\n", t0, t1,
		(double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
		(double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss, rc);
	fclose(f);
	return rc;
}
