/* Threads parked in known functions at known depths, for lpstack's process
 * tests (tests/process_*.rs). Built with cc -O2, with and without
 * -fno-omit-frame-pointer, linked against libparked.so.
 *
 *   a     park_a -> mid -> leaf_sleep -> pause()
 *   b     park_b -> mid -> leaf_sleep -> pause()
 *   ns    park_ns -> leaf_nanosleep -> nanosleep()
 *   sig   park_sig -> sig_spin, interrupted by SIGUSR1:
 *         on_usr1 -> handler_leaf -> pause()
 *   lib   lib_park -> lib_mid -> lib_leaf -> nanosleep() (libparked.so)
 *   main  pthread_join()
 *
 * Prints "ready main=PID a=TID b=TID ns=TID sig=TID lib=TID" once every
 * thread is parked; never exits by itself. With the argument "churn", one
 * more thread creates and joins short-lived threads without end (threads
 * appearing and exiting while lpstack attaches). With "zombie", the main
 * thread calls pthread_exit after printing: a zombie group leader while the
 * other threads live on. Every function is noinline and
 * does work after its call (a volatile increment), so no call is a tail
 * call and every return address lies inside its caller. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEEP __attribute__((noinline, used))

volatile int sink;
volatile int stop; /* never set: threads stay parked */
static atomic_int parked;
static pid_t tids[5];

void lib_park(void);

KEEP void leaf_sleep(void) {
    atomic_fetch_add(&parked, 1);
    while (!stop)
        pause();
    sink++;
}

KEEP void mid(void) {
    leaf_sleep();
    sink++;
}

KEEP void park_a(void) {
    mid();
    sink++;
}

KEEP void park_b(void) {
    mid();
    sink++;
}

KEEP void leaf_nanosleep(void) {
    struct timespec ts = {1000, 0};
    atomic_fetch_add(&parked, 1);
    while (!stop)
        nanosleep(&ts, NULL);
    sink++;
}

KEEP void park_ns(void) {
    leaf_nanosleep();
    sink++;
}

KEEP void handler_leaf(void) {
    atomic_fetch_add(&parked, 1);
    while (!stop)
        pause();
    sink++;
}

KEEP void on_usr1(int sig) {
    (void)sig;
    handler_leaf();
    sink++;
}

KEEP void sig_spin(void) {
    while (!stop)
        sink++;
}

KEEP void park_sig(void) {
    sig_spin();
    sink++;
}

static void *nothing(void *arg) {
    sink++;
    return arg;
}

static void *churn(void *arg) {
    while (!stop) {
        pthread_t t;
        if (pthread_create(&t, NULL, nothing, NULL) == 0)
            pthread_join(t, NULL);
    }
    return arg;
}

static void *run(void *arg) {
    long role = (long)arg;
    static const char *names[] = {"park_a", "park_b", "park_ns", "park_sig", "park_lib"};
    tids[role] = gettid();
    pthread_setname_np(pthread_self(), names[role]);
    switch (role) {
    case 0: park_a(); break;
    case 1: park_b(); break;
    case 2: park_ns(); break;
    case 3: park_sig(); break;
    case 4: atomic_fetch_add(&parked, 1); lib_park(); break;
    }
    return NULL;
}

int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);

    pthread_t t[5];
    for (long i = 0; i < 5; i++)
        pthread_create(&t[i], NULL, run, (void *)i);
    /* a, b, ns and lib park by themselves; then sig is sent its signal. */
    while (atomic_load(&parked) < 4 || tids[3] == 0)
        usleep(1000);
    pthread_kill(t[3], SIGUSR1);
    while (atomic_load(&parked) < 5)
        usleep(1000);
    if (argc > 1 && strcmp(argv[1], "churn") == 0) {
        pthread_t c;
        pthread_create(&c, NULL, churn, NULL);
    }
    printf("ready main=%d a=%d b=%d ns=%d sig=%d lib=%d\n", getpid(), tids[0], tids[1], tids[2], tids[3], tids[4]);
    fflush(stdout);
    if (argc > 1 && strcmp(argv[1], "zombie") == 0)
        pthread_exit(NULL);
    pthread_join(t[0], NULL);
    return 0;
}
