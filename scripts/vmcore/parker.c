// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * parker: workload for lpstack's vmcore fixtures (runs inside the guest).
 *
 *   parker NAME SPOT...
 *
 * Starts one thread per SPOT (a, b or c); each thread names itself
 * "NAME-SPOT<i>" and parks in the lpstack_park module's park_here_SPOT()
 * with pread(/dev/lpstack_park, offset 0/1/2). The main thread then waits
 * in pthread_join() (a futex sleep). With the single SPOT "main-X" the main
 * thread itself parks (no extra threads); it is named "NAME-SPOT". In the
 * multi-threaded form the main thread is named "NAME-main".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static const char *dev = "/dev/lpstack_park";
static const char *prog_name;

struct spot {
	pthread_t thread;
	char spot;
	int index;
};

static void park(char spot)
{
	char buf[1];
	int fd = open(dev, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "parker: open %s: %s\n", dev, strerror(errno));
		exit(1);
	}
	ssize_t r = pread(fd, buf, 1, spot - 'a');
	fprintf(stderr, "parker: woke up from park_here_%c (%zd)\n", spot, r);
	close(fd);
}

static void *run(void *arg)
{
	struct spot *s = arg;
	char name[16];
	snprintf(name, sizeof name, "%.9s-%c%d", prog_name, s->spot, s->index);
	prctl(PR_SET_NAME, name, 0, 0, 0);
	park(s->spot);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: parker NAME SPOT... | parker NAME main-SPOT\n");
		return 2;
	}
	prog_name = argv[1];
	if (strncmp(argv[2], "main-", 5) == 0) {
		char name[16];
		snprintf(name, sizeof name, "%.9s-%c", prog_name, argv[2][5]);
		prctl(PR_SET_NAME, name, 0, 0, 0);
		park(argv[2][5]);
		return 0;
	}
	char main_name[16];
	snprintf(main_name, sizeof main_name, "%.9s-main", prog_name);
	prctl(PR_SET_NAME, main_name, 0, 0, 0);
	int n = argc - 2;
	struct spot *spots = calloc(n, sizeof *spots);
	int count[3] = {0, 0, 0};
	for (int i = 0; i < n; i++) {
		char c = argv[i + 2][0];
		if (c < 'a' || c > 'c' || argv[i + 2][1]) {
			fprintf(stderr, "parker: bad spot %s\n", argv[i + 2]);
			return 2;
		}
		spots[i].spot = c;
		spots[i].index = count[c - 'a']++;
		if (pthread_create(&spots[i].thread, NULL, run, &spots[i]) != 0) {
			fprintf(stderr, "parker: pthread_create failed\n");
			return 1;
		}
	}
	for (int i = 0; i < n; i++)
		pthread_join(spots[i].thread, NULL);
	return 0;
}
