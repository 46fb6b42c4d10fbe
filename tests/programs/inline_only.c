/* A patched function that exists only inlined: static, always inlined and
 * never address-taken, so there is no out-of-line copy and no symbol. Only
 * DWARF knows it; lpstack must accept it and see the inlined copy. */
#include <stdio.h>
#include <unistd.h>

static volatile int sink;

static inline __attribute__((always_inline)) int inline_only_fn(int x) {
    sink = x;
    pause();
    return sink + 1;
}

__attribute__((noinline)) int caller(int x) {
    int r = inline_only_fn(x);
    sink = r;
    return r * 2;
}

int main(void) {
    printf("ready\n");
    fflush(stdout);
    return caller(3);
}
