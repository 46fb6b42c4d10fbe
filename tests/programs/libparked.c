/* The shared-library part of parked.c: lib_park -> lib_mid -> lib_leaf ->
 * nanosleep(), built with -shared -fPIC. */
#include <time.h>

#define KEEP __attribute__((noinline, used))

volatile int lib_sink;
volatile int lib_stop;

KEEP void lib_leaf(void) {
    struct timespec ts = {1000, 0};
    while (!lib_stop)
        nanosleep(&ts, NULL);
    lib_sink++;
}

KEEP void lib_mid(void) {
    lib_leaf();
    lib_sink++;
}

KEEP void lib_park(void) {
    lib_mid();
    lib_sink++;
}
