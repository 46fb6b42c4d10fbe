/* A patched function that is both inlined into its caller and kept out of
 * line (its address is taken): lpstack must see the inlined copy. */
#include <stdio.h>
#include <unistd.h>

static volatile int sink;

static inline __attribute__((always_inline)) int patched_fn(int x) {
    sink = x;
    pause();
    return sink + 1;
}

int (*keep_out_of_line)(int) = patched_fn;

__attribute__((noinline)) int caller(int x) {
    int r = patched_fn(x);
    sink = r;
    return r * 2;
}

int main(void) {
    printf("ready %p\n", (void *)keep_out_of_line);
    fflush(stdout);
    return caller(3);
}
