/* The C API unwinding this very process. Every loaded ELF object (from
 * dl_iterate_phdr: the executable, libc, ...) goes into one userspace
 * unwinder; three threads park in known functions and each decides itself
 * through a read callback over its own stack. The thread parked in the
 * patched function must be BLOCKED there, the others SWITCHABLE, and every
 * walk must reach the thread's outermost frame reliably.
 *
 * Built by ffi/tests/c_programs.rs as C and as C++, and under ASan. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_getattr_np, dl_iterate_phdr */
#endif
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lpstack.h"

static int failures, checks;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        checks++;                                                          \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

static void die(const char *what, lpstack_result r) {
    char text[512] = "";
    size_t n;
    if (lpstack_last_error(text, sizeof text, &n) != LPSTACK_RESULT_OK)
        text[0] = 0;
    fprintf(stderr, "%s: %s (%s)\n", what, lpstack_result_message(r), text);
    exit(1);
}

static lpstack_unwinder *unwinder;
static lpstack_patchset *set;
static char exe_name[256];

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0, got;
    unsigned char *buf = (unsigned char *)malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *bigger = (unsigned char *)realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = bigger;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* One loaded object: each executable segment becomes a mapping. */
static int add_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    int *first = (int *)data;
    const char *path = info->dlpi_name;
    if (*first) {
        path = "/proc/self/exe"; /* the executable has no name here */
        *first = 0;
    }
    if (!path || path[0] != '/')
        return 0; /* the vdso: no file */
    size_t len;
    unsigned char *elf = read_file(path, &len);
    if (!elf)
        return 0;
    const char *name = strcmp(path, "/proc/self/exe") == 0 ? exe_name : base_name(path);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uint64_t start = info->dlpi_addr + ph->p_vaddr;
        lpstack_result r = lpstack_unwinder_add_elf(unwinder, name, elf, len, start, start + ph->p_memsz,
                                                    info->dlpi_addr);
        if (r != LPSTACK_RESULT_OK)
            die(path, r);
    }
    free(elf); /* lpstack keeps its own copy of what it needs */
    return 0;
}

struct bounds {
    uint64_t lo, hi;
};

/* Reads this process's memory, but only on the thread's own stack. */
static int read_own(void *ctx, uint64_t addr, void *buf, size_t len) {
    const struct bounds *b = (const struct bounds *)ctx;
    if (addr < b->lo || addr + len > b->hi || addr + len < addr)
        return -1;
    memcpy(buf, (const void *)(uintptr_t)addr, len);
    return 0;
}

struct outcome {
    lpstack_decision d;
    lpstack_frame frames[64];
    size_t n_frames;
    lpstack_hit hits[8];
    size_t n_hits;
    lpstack_result r;
};

/* Decides the calling thread from this frame: rip, rsp and rbp here. */
__attribute__((noinline)) static void decide_here(struct outcome *o) {
    uint64_t ip, sp, bp;
    __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(ip), "=r"(sp), "=r"(bp));

    pthread_attr_t attr;
    void *stack;
    size_t stack_size;
    struct bounds b = {0, 0};
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &stack, &stack_size) == 0) {
            b.lo = (uint64_t)(uintptr_t)stack;
            b.hi = b.lo + stack_size;
        }
        pthread_attr_destroy(&attr);
    }

    lpstack_thread_input in;
    memset(&in, 0, sizeof in);
    in.size = sizeof in;
    in.regs[16] = ip; /* DWARF 16: rip */
    in.regs[7] = sp;  /* DWARF 7: rsp */
    in.regs[6] = bp;  /* DWARF 6: rbp */
    in.known_mask = (1u << 16) | (1u << 7) | (1u << 6);
    in.signal = 1; /* rip is where we are, not a return address */
    in.stack_lo = b.lo;
    in.stack_hi = b.hi;
    in.read = read_own;
    in.read_ctx = &b;

    lpstack_scratch *scratch;
    lpstack_result r = lpstack_scratch_new(0, &scratch);
    if (r != LPSTACK_RESULT_OK)
        die("scratch", r);
    memset(&o->d, 0, sizeof o->d);
    o->d.size = sizeof o->d;
    o->r = lpstack_thread_decide(unwinder, set, &in, scratch, &o->d, o->frames, 64, &o->n_frames);
    if (o->r == LPSTACK_RESULT_OK)
        o->r = lpstack_scratch_hits(scratch, o->hits, 8, &o->n_hits);
    lpstack_scratch_free(scratch);
    __asm__ volatile("" ::: "memory"); /* keep this frame until the decision is made */
}

#ifdef __cplusplus
extern "C" {
#endif
/* The functions of the patch set: C names, also when built as C++. */
__attribute__((noinline)) void park_here_a(struct outcome *o);
__attribute__((noinline)) void park_here_b(struct outcome *o);
#ifdef __cplusplus
}
#endif

static pthread_barrier_t all_parked;
/* Distinct side effects keep gcc from folding the two identical parking
 * functions into one (-fipa-icf): then B would really sit in A's code. */
static volatile int parked_in;

__attribute__((noinline)) void park_here_a(struct outcome *o) {
    parked_in = 'a';
    pthread_barrier_wait(&all_parked); /* every thread alive at once */
    decide_here(o);
    __asm__ volatile("" ::: "memory"); /* no tail call: stay on the stack */
}

__attribute__((noinline)) void park_here_b(struct outcome *o) {
    parked_in = 'b';
    pthread_barrier_wait(&all_parked);
    decide_here(o);
    __asm__ volatile("" ::: "memory");
}

static void *thread_a(void *arg) {
    park_here_a((struct outcome *)arg);
    return NULL;
}

static void *thread_b(void *arg) {
    park_here_b((struct outcome *)arg);
    return NULL;
}

static void check_walk(const char *who, const struct outcome *o) {
    CHECK(o->r == LPSTACK_RESULT_OK, "%s: %s", who, lpstack_result_message(o->r));
    if (o->d.verdict == LPSTACK_VERDICT_UNRELIABLE) {
        char why[256] = "";
        size_t n;
        lpstack_decision_reason_text(&o->d, why, sizeof why, &n);
        fprintf(stderr, "%s: unreliable at frame %u: %s\n", who, o->d.frame, why);
    }
    CHECK(o->d.end == LPSTACK_WALK_END_END_OF_STACK, "%s: end %u", who, (unsigned)o->d.end);
    CHECK(o->d.frame_count >= 3 && o->n_frames == o->d.frame_count, "%s: %u frames, %zu copied", who,
          o->d.frame_count, o->n_frames);
    for (size_t i = 0; i < o->n_frames; i++)
        CHECK(o->frames[i].flags & LPSTACK_FRAME_RELIABLE, "%s: frame %zu", who, i);
    for (size_t i = 0; i < o->n_frames; i++) {
        char name[128] = "?";
        uint64_t off = 0;
        lpstack_unwinder_symbolize(unwinder, o->frames[i].pc, name, sizeof name, &off);
        printf("  %s #%zu %#llx %s+%#llx\n", who, i, (unsigned long long)o->frames[i].pc, name,
               (unsigned long long)off);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    snprintf(exe_name, sizeof exe_name, "%s", base_name(argv[0]));
    printf("lpstack %s\n", lpstack_version());

    lpstack_result r = lpstack_unwinder_new_user(&unwinder);
    if (r != LPSTACK_RESULT_OK)
        die("unwinder", r);
    int first = 1;
    dl_iterate_phdr(add_object, &first);

    /* The patched function, named as in a funcs.txt. */
    r = lpstack_patchset_new_from_text("# parked thread A\npark_here_a\n", exe_name, unwinder, &set);
    if (r != LPSTACK_RESULT_OK)
        die("patch set", r);
    lpstack_range fn;
    memset(&fn, 0, sizeof fn);
    fn.size = sizeof fn;
    r = lpstack_patchset_get(set, 0, &fn);
    CHECK(r == LPSTACK_RESULT_OK && strcmp(fn.function, "park_here_a") == 0, "patchset_get");
    CHECK(fn.address == (uint64_t)(uintptr_t)&park_here_a, "park_here_a resolved to %#llx, is at %p",
          (unsigned long long)fn.address, (void *)&park_here_a);

    static struct outcome a, b1, b2, main_thread;
    pthread_barrier_init(&all_parked, NULL, 3);
    pthread_t ta, tb1, tb2;
    pthread_create(&ta, NULL, thread_a, &a);
    pthread_create(&tb1, NULL, thread_b, &b1);
    pthread_create(&tb2, NULL, thread_b, &b2);
    pthread_join(ta, NULL);
    pthread_join(tb1, NULL);
    pthread_join(tb2, NULL);
    pthread_barrier_destroy(&all_parked);
    decide_here(&main_thread);

    check_walk("A", &a);
    CHECK(a.d.verdict == LPSTACK_VERDICT_BLOCKED, "A: verdict %s", lpstack_verdict_name(a.d.verdict));
    CHECK(a.d.blocking_function == 0, "A: function %u", a.d.blocking_function);
    CHECK(a.d.pc >= fn.address && a.d.pc < fn.address + fn.size_bytes, "A: pc %#llx",
          (unsigned long long)a.d.pc);
    CHECK(a.d.frame >= 1 && a.d.frame < a.n_frames && a.frames[a.d.frame].pc == a.d.pc, "A: frame %u", a.d.frame);
    CHECK(a.n_hits == 1 && a.hits[0].function == 0 && a.hits[0].frame == a.d.frame, "A: %zu hits", a.n_hits);

    check_walk("B1", &b1);
    check_walk("B2", &b2);
    check_walk("main", &main_thread);
    CHECK(b1.d.verdict == LPSTACK_VERDICT_SWITCHABLE, "B1: %s", lpstack_verdict_name(b1.d.verdict));
    CHECK(b2.d.verdict == LPSTACK_VERDICT_SWITCHABLE, "B2: %s", lpstack_verdict_name(b2.d.verdict));
    CHECK(main_thread.d.verdict == LPSTACK_VERDICT_SWITCHABLE, "main: %s",
          lpstack_verdict_name(main_thread.d.verdict));
    CHECK(b1.d.blocking_function == LPSTACK_NONE && b1.n_hits == 0, "B1 hits");

    /* The snapshot under two models: livepatch switches B1, B2 and main
     * now; kpatch's one unit waits for A. */
    lpstack_thread_facts facts[4];
    const struct outcome *all[4] = {&a, &b1, &b2, &main_thread};
    uint32_t hit_fns[4][8];
    for (int t = 0; t < 4; t++) {
        memset(&facts[t], 0, sizeof facts[t]);
        facts[t].size = sizeof facts[t];
        facts[t].reliable = all[t]->d.verdict == LPSTACK_VERDICT_SWITCHABLE || all[t]->d.verdict == LPSTACK_VERDICT_BLOCKED;
        facts[t].in_kernel = 0;
        for (size_t h = 0; h < all[t]->n_hits; h++)
            hit_fns[t][h] = all[t]->hits[h].function;
        facts[t].hits = hit_fns[t];
        facts[t].hit_count = all[t]->n_hits;
    }
    uint8_t ready[4] = {9, 9, 9, 9};
    size_t units = 0;
    r = lpstack_model_evaluate(LPSTACK_LEAVE_PATCHED_SET, LPSTACK_SWITCH_THREAD, facts, 4, 1, ready, 4, &units);
    CHECK(r == LPSTACK_RESULT_OK && units == 4, "livepatch model");
    CHECK(ready[0] == 0 && ready[1] == 1 && ready[2] == 1 && ready[3] == 1, "livepatch ready %d%d%d%d", ready[0],
          ready[1], ready[2], ready[3]);
    r = lpstack_model_evaluate(LPSTACK_LEAVE_PATCHED_SET, LPSTACK_SWITCH_KERNEL, facts, 4, 1, ready, 4, &units);
    CHECK(r == LPSTACK_RESULT_OK && units == 1 && ready[0] == 0, "kpatch model");
    r = lpstack_model_evaluate(LPSTACK_LEAVE_KERNEL, LPSTACK_SWITCH_THREAD, facts, 4, 1, ready, 4, &units);
    CHECK(r == LPSTACK_RESULT_OK && ready[0] == 1, "kGraft: no thread is in the kernel");

    lpstack_patchset_free(set);
    lpstack_unwinder_free(unwinder);
    printf("self_unwind: %d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
