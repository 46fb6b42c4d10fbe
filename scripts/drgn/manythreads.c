// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * manythreads: many blocked tasks for lpstack's scaling dumps (runs inside
 * the guest started by scripts/drgn/make-many-dump.sh, MODE=threads).
 *
 *   manythreads N [READYFILE]
 *
 * Creates N threads, each blocked forever in futex(FUTEX_WAIT) on a word
 * that never changes. All thread stacks are STACK bytes (16 KiB) slices of
 * one anonymous mapping handed to pthread_attr_setstack(), so there is one
 * VMA for all of them (no guard pages, no vm.max_map_count limit) and each
 * thread costs its kernel task, a kernel stack and the one or two user
 * pages it touches. Then prints "manythreads: N threads" to stdout, creates
 * READYFILE (if given) and the main thread waits in pause().
 *
 * Build: gcc -static -O2 -pthread -o manythreads manythreads.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STACK (16 * 1024)

static int never; /* stays 0: FUTEX_WAIT on it blocks until a signal */

static void *blocked(void *arg)
{
	(void)arg;
	for (;;)
		syscall(SYS_futex, &never, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: manythreads N [READYFILE]\n");
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	if (n < 0)
		n = 0;
	size_t len = (size_t)(n ? n : 1) * STACK;
	char *stacks = mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (stacks == MAP_FAILED) {
		fprintf(stderr, "manythreads: mmap %zu: %s\n", len, strerror(errno));
		return 1;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	long made = 0;
	for (long i = 0; i < n; i++) {
		pthread_t t;
		pthread_attr_setstack(&attr, stacks + (size_t)i * STACK, STACK);
		int e = pthread_create(&t, &attr, blocked, NULL);
		if (e) {
			fprintf(stderr, "manythreads: pthread_create #%ld: %s\n",
				i, strerror(e));
			break;
		}
		made++;
		if (made % 10000 == 0) {
			printf("manythreads: %ld threads so far\n", made);
			fflush(stdout);
		}
	}
	printf("manythreads: %ld threads\n", made);
	fflush(stdout);
	if (argc > 2) {
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			char buf[32];
			int k = snprintf(buf, sizeof buf, "%ld\n", made);
			if (write(fd, buf, k) < 0)
				perror("manythreads: write");
			close(fd);
		}
	}
	for (;;)
		pause();
}
