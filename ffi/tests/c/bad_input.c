/* Bad input through the C API: NULL pointers, garbage tables and files,
 * sizes that do not match, and read callbacks that fail, fail midway or
 * return short reads. Every call must return its documented result code,
 * or decide UNRELIABLE with the right reason, and never crash or write an
 * output on failure.
 *
 * A tiny kernel is made by hand: ORC v3 tables for f [0x1000, 0x2000),
 * g [0x2000, 0x3000), the outermost function at [0x3000, 0x4000) and the
 * end-of-text terminator at 0x4000, and a stack image in which f was called by g, called from the outermost
 * function. Built by ffi/tests/c_programs.rs as C and as C++, and under
 * ASan. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
#define EXPECT(call, want)                                                 \
    do {                                                                   \
        lpstack_result got_ = (call);                                      \
        CHECK(got_ == (want), "got %s (%u), want %s", lpstack_result_message(got_), (unsigned)got_, \
              lpstack_result_message(want));                               \
    } while (0)

/* ---- the hand-made kernel ---- */

#define IP_TABLE 0x10000u
#define STACK_LO 0x7000u
#define STACK_HI 0x8000u
#define SP 0x7f00u

static uint8_t ip_table[4 * 4];
static uint8_t entries[4 * 6];

static void put32(uint8_t *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ORC v3 entry: sp_offset, bp_offset (s16), sp_reg:4 bp_reg:4, type:3. */
static void entry(int i, uint64_t ip, int16_t sp_offset, uint8_t type) {
    put32(ip_table + 4 * i, (int32_t)(ip - (IP_TABLE + 4 * (uint64_t)i)));
    uint8_t *e = entries + 6 * i;
    e[0] = (uint8_t)sp_offset;
    e[1] = (uint8_t)((uint16_t)sp_offset >> 8);
    e[2] = 0;
    e[3] = 0;
    e[4] = 5; /* sp_reg = SP, bp_reg = UNDEFINED */
    e[5] = type;
}

enum { ORC_UNDEFINED = 0, ORC_END_OF_STACK = 1, ORC_CALL = 2 };

static uint8_t stack[STACK_HI - STACK_LO];

static void build_kernel(void) {
    entry(0, 0x1000, 8, ORC_CALL); /* f */
    entry(1, 0x2000, 8, ORC_CALL); /* g */
    entry(2, 0x3000, 0, ORC_END_OF_STACK);
    entry(3, 0x4000, 0, ORC_UNDEFINED); /* a table answers up to its last ip */
    memset(stack, 0, sizeof stack);
    put64(stack + (SP - STACK_LO), 0x2005);     /* f returns into g */
    put64(stack + (SP + 8 - STACK_LO), 0x3005); /* g returns into the outermost */
}

/* ---- read callbacks ---- */

struct reader {
    int mode; /* 0 ok, 1 fail, 2 fail after one read, 3 short, 4 garbage */
    int calls;
};

static int read_stack(void *ctx, uint64_t addr, void *buf, size_t len) {
    struct reader *r = (struct reader *)ctx;
    r->calls++;
    if (r->mode == 1 || (r->mode == 2 && r->calls > 1))
        return -1;
    if (r->mode == 3)
        return (int)(len / 2); /* only half of it */
    if (addr < STACK_LO || addr + len > STACK_HI)
        return -1;
    if (r->mode == 4) {
        memset(buf, 0x41, len);
        return 0;
    }
    memcpy(buf, stack + (addr - STACK_LO), len);
    return 0;
}

static lpstack_thread_input input(struct reader *r) {
    lpstack_thread_input in;
    memset(&in, 0, sizeof in);
    in.size = sizeof in;
    in.regs[16] = 0x1005; /* rip: f's resume address, a return address */
    in.regs[7] = SP;      /* rsp */
    in.known_mask = (1u << 16) | (1u << 7);
    in.stack_lo = STACK_LO;
    in.stack_hi = STACK_HI;
    in.read = read_stack;
    in.read_ctx = r;
    return in;
}

static lpstack_decision fresh(void) {
    lpstack_decision d;
    memset(&d, 0x5a, sizeof d); /* garbage: lpstack must not read it */
    d.size = sizeof d;
    return d;
}

static void decide_with(lpstack_unwinder *u, lpstack_patchset *set, lpstack_scratch *s, int mode,
                        lpstack_decision *d) {
    struct reader r = {mode, 0};
    lpstack_thread_input in = input(&r);
    *d = fresh();
    EXPECT(lpstack_thread_decide(u, set, &in, s, d, NULL, 0, NULL), LPSTACK_RESULT_OK);
}

static void null_arguments(void) {
    lpstack_unwinder *u = (lpstack_unwinder *)0x1; /* must stay untouched */
    uint8_t byte = 0;
    EXPECT(lpstack_unwinder_new_orc_elf(NULL, 10, 0, 0, &u), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_new_orc_elf(&byte, 1, 0, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_new_orc_tables(NULL, 4, entries, 6, 0, 3, &u), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_new_orc_tables(ip_table, 4, NULL, 6, 0, 3, &u), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_new_user(NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_add_elf(NULL, "x", &byte, 1, 1, 2, 0), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_add_text(NULL, 1, 2), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_add_orc_tables(NULL, ip_table, 4, entries, 6, 0, 3, 0, 0), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_add_system_map(NULL, "vmlinux", ""), LPSTACK_RESULT_NULL_ARGUMENT);
    CHECK(u == (lpstack_unwinder *)0x1, "an output was written on failure");

    lpstack_patchset *set = (lpstack_patchset *)0x1;
    EXPECT(lpstack_patchset_new_from_text(NULL, NULL, NULL, &set), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_patchset_new_from_text("", NULL, NULL, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_patchset_new_from_ranges(NULL, 1, &set), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_patchset_get(NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    CHECK(lpstack_patchset_len(NULL) == 0, "len of NULL");
    CHECK(set == (lpstack_patchset *)0x1, "an output was written on failure");

    EXPECT(lpstack_scratch_new(0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_scratch_hits(NULL, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_model_evaluate(0, 0, NULL, 0, 0, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_model_parse(NULL, NULL, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_last_error(NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_decision_reason_text(NULL, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_unwinder_symbolize(NULL, 0, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);

    /* The last failure is explained. */
    char text[256];
    size_t n = 0;
    EXPECT(lpstack_last_error(text, sizeof text, &n), LPSTACK_RESULT_OK);
    CHECK(n > 0 && strstr(text, "NULL") != NULL, "last error: %s", text);
    CHECK(lpstack_last_error_len() == n, "length");
    EXPECT(lpstack_last_error(text, 3, &n), LPSTACK_RESULT_BUFFER_TOO_SMALL);

    /* Releasing NULL does nothing. */
    lpstack_unwinder_free(NULL);
    lpstack_patchset_free(NULL);
    lpstack_scratch_free(NULL);
}

static void garbage_tables(void) {
    lpstack_unwinder *u = NULL;
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 7 + 3);
    EXPECT(lpstack_unwinder_new_orc_elf(junk, sizeof junk, 0, 0, &u), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_unwinder_new_orc_elf(NULL, 0, 3, 0, &u), LPSTACK_RESULT_PARSE_ERROR);
    /* An ELF header with nothing behind it. */
    memcpy(junk, "\177ELF\2\1\1", 7);
    EXPECT(lpstack_unwinder_new_orc_elf(junk, 64, 0, 0, &u), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_unwinder_new_orc_elf(junk, sizeof junk, 7, 0, &u), LPSTACK_RESULT_INVALID_ARGUMENT);
    EXPECT(lpstack_unwinder_new_orc_tables(ip_table, 3, entries, 18, IP_TABLE, 3, &u), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_unwinder_new_orc_tables(ip_table, 12, entries, 17, IP_TABLE, 3, &u), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_unwinder_new_orc_tables(ip_table, 8, entries, 18, IP_TABLE, 3, &u), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_unwinder_new_orc_tables(ip_table, 0, entries, 0, IP_TABLE, 3, &u), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_unwinder_new_orc_tables(ip_table, 12, entries, 18, IP_TABLE, 0, &u), LPSTACK_RESULT_UNKNOWN_FORMAT);
    CHECK(u == NULL, "output written on failure");
    /* The same tables at another address: every ip moves, still sorted. */
    EXPECT(lpstack_unwinder_new_orc_tables(ip_table, 12, entries, 18, IP_TABLE + 0x100000, 3, &u),
           LPSTACK_RESULT_OK);
    lpstack_unwinder_free(u);
    uint8_t unsorted[8];
    put32(unsorted, 0x3000 - IP_TABLE);
    put32(unsorted + 4, 0x1000 - (IP_TABLE + 4));
    u = NULL;
    EXPECT(lpstack_unwinder_new_orc_tables(unsorted, 8, entries, 12, IP_TABLE, 3, &u), LPSTACK_RESULT_PARSE_ERROR);
    CHECK(u == NULL, "output written on failure");

    /* Userspace: a file that is not ELF, an empty mapping, the wrong kind. */
    EXPECT(lpstack_unwinder_new_user(&u), LPSTACK_RESULT_OK);
    EXPECT(lpstack_unwinder_add_elf(u, "junk", junk, sizeof junk, 0x1000, 0x2000, 0), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_unwinder_add_mapping(u, "junk", junk, sizeof junk, 0x1000, 0x2000, 0), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_unwinder_add_elf(u, "junk", junk, sizeof junk, 0x2000, 0x1000, 0), LPSTACK_RESULT_INVALID_ARGUMENT);
    EXPECT(lpstack_unwinder_add_text(u, 0x1000, 0x2000), LPSTACK_RESULT_WRONG_KIND);
    EXPECT(lpstack_unwinder_add_orc_tables(u, ip_table, 12, entries, 18, IP_TABLE, 3, 0, 0), LPSTACK_RESULT_WRONG_KIND);
    EXPECT(lpstack_unwinder_add_system_map(u, "x", "not a system map line\n"), LPSTACK_RESULT_PARSE_ERROR);
    const char bad_utf8[] = {'f', (char)0xff, 0};
    EXPECT(lpstack_unwinder_add_system_map(u, bad_utf8, ""), LPSTACK_RESULT_INVALID_UTF8);
    lpstack_patchset *set = NULL;
    EXPECT(lpstack_patchset_new_from_text("a:b:c\n", NULL, u, &set), LPSTACK_RESULT_PARSE_ERROR);
    EXPECT(lpstack_patchset_new_from_text("nosuch\n", "prog", u, &set), LPSTACK_RESULT_RESOLVE_ERROR);
    EXPECT(lpstack_patchset_new_from_text("f\n", NULL, NULL, &set), LPSTACK_RESULT_RESOLVE_ERROR);
    CHECK(set == NULL, "output written on failure");
    EXPECT(lpstack_patchset_new_from_text("# nothing\n", NULL, NULL, &set), LPSTACK_RESULT_OK);
    CHECK(lpstack_patchset_len(set) == 0, "empty set");
    lpstack_patchset_free(set);
    lpstack_unwinder_free(u);
}

static void sizes_and_ranges(void) {
    lpstack_patchset *set = NULL;
    lpstack_range r[2];
    memset(r, 0, sizeof r);
    r[0].size = sizeof r[0];
    r[0].object = "vmlinux";
    r[0].function = "g";
    r[0].address = 0x2000;
    r[0].size_bytes = 0;
    EXPECT(lpstack_patchset_new_from_ranges(r, 1, &set), LPSTACK_RESULT_INVALID_ARGUMENT);
    r[0].size_bytes = 0x1000;
    r[0].size = 8;
    EXPECT(lpstack_patchset_new_from_ranges(r, 1, &set), LPSTACK_RESULT_SIZE_TOO_SMALL);
    r[0].size = sizeof r[0];
    r[1] = r[0];
    r[1].size = sizeof r[0] + 8; /* elements must agree with the first */
    EXPECT(lpstack_patchset_new_from_ranges(r, 2, &set), LPSTACK_RESULT_INVALID_ARGUMENT);
    r[1].size = sizeof r[0];
    r[1].function = NULL;
    EXPECT(lpstack_patchset_new_from_ranges(r, 2, &set), LPSTACK_RESULT_NULL_ARGUMENT);
    CHECK(set == NULL, "output written on failure");

    lpstack_scratch *s = NULL;
    EXPECT(lpstack_scratch_new(2000000, &s), LPSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(s == NULL, "output written on failure");

    uint32_t leave = 77, sw = 77;
    EXPECT(lpstack_model_parse("LEAVE_NOWHERE,SWITCH_THREAD", &leave, &sw), LPSTACK_RESULT_PARSE_ERROR);
    CHECK(leave == 77 && sw == 77, "output written on failure");
    size_t units = 99;
    uint8_t ready[2];
    EXPECT(lpstack_model_evaluate(7, 0, NULL, 0, 1, ready, 2, &units), LPSTACK_RESULT_INVALID_ARGUMENT);
    EXPECT(lpstack_model_evaluate(0, 7, NULL, 0, 1, ready, 2, &units), LPSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(units == 99, "output written on failure");
    lpstack_thread_facts facts;
    memset(&facts, 0, sizeof facts);
    facts.size = 4;
    EXPECT(lpstack_model_evaluate(0, 1, &facts, 1, 1, ready, 2, &units), LPSTACK_RESULT_SIZE_TOO_SMALL);
    facts.size = sizeof facts;
    facts.hit_count = 1; /* hits NULL */
    EXPECT(lpstack_model_evaluate(0, 1, &facts, 1, 1, ready, 2, &units), LPSTACK_RESULT_NULL_ARGUMENT);

    CHECK(lpstack_reason_name(99) == NULL && lpstack_verdict_name(99) == NULL, "unknown names");
    CHECK(strcmp(lpstack_result_message(12345), "unknown result") == 0, "unknown result");
    CHECK(strcmp(lpstack_reason_name(LPSTACK_REASON_UNREADABLE), "unreadable") == 0, "reason name");
}

static void walks(void) {
    lpstack_unwinder *u = NULL;
    EXPECT(lpstack_unwinder_new_orc_tables(ip_table, sizeof ip_table, entries, sizeof entries, IP_TABLE, 3, &u),
           LPSTACK_RESULT_OK);
    lpstack_range g;
    memset(&g, 0, sizeof g);
    g.size = sizeof g;
    g.object = "vmlinux";
    g.function = "g";
    g.address = 0x2000;
    g.size_bytes = 0x1000;
    lpstack_patchset *set = NULL;
    EXPECT(lpstack_patchset_new_from_ranges(&g, 1, &set), LPSTACK_RESULT_OK);
    lpstack_scratch *s = NULL;
    EXPECT(lpstack_scratch_new(16, &s), LPSTACK_RESULT_OK);
    lpstack_decision d;

    /* Declared text replaces the tables' own range: without the outermost
     * function, its return address is not code. */
    EXPECT(lpstack_unwinder_add_text(u, 0x1000, 0x3000), LPSTACK_RESULT_OK);
    decide_with(u, set, s, 0, &d);
    CHECK(d.verdict == LPSTACK_VERDICT_UNRELIABLE && d.reason == LPSTACK_REASON_NOT_TEXT && d.reason_addr == 0x3005 &&
              d.frame == 2,
          "verdict %u reason %u", (unsigned)d.verdict, (unsigned)d.reason);
    EXPECT(lpstack_unwinder_add_text(u, 0x3000, 0x4000), LPSTACK_RESULT_OK);
    EXPECT(lpstack_unwinder_add_text(u, 0x5000, 0x5000), LPSTACK_RESULT_INVALID_ARGUMENT);

    /* The good walk: blocked in g, one frame up. */
    decide_with(u, set, s, 0, &d);
    CHECK(d.verdict == LPSTACK_VERDICT_BLOCKED && d.blocking_function == 0 && d.frame == 1 && d.pc == 0x2005,
          "verdict %u fn %u frame %u reason %s at %#llx", (unsigned)d.verdict, d.blocking_function, d.frame,
          lpstack_reason_name(d.reason), (unsigned long long)d.reason_addr);
    CHECK(d.frame_count == 3 && d.hit_count == 1 && d.end == LPSTACK_WALK_END_END_OF_STACK, "frames %u",
          d.frame_count);
    char text[128];
    size_t n = 0;
    EXPECT(lpstack_decision_reason_text(&d, text, sizeof text, &n), LPSTACK_RESULT_NOT_FOUND);
    lpstack_hit hits[1];
    size_t nh = 7;
    EXPECT(lpstack_scratch_hits(s, hits, 0, &nh), LPSTACK_RESULT_BUFFER_TOO_SMALL);
    CHECK(nh == 7, "output written on failure");
    EXPECT(lpstack_scratch_hits(s, hits, 1, &nh), LPSTACK_RESULT_OK);
    CHECK(nh == 1 && hits[0].function == 0 && hits[0].frame == 1 && hits[0].pc == 0x2005, "hit");

    /* Only one frame fits in the caller's buffer. */
    struct reader r = {0, 0};
    lpstack_thread_input in = input(&r);
    lpstack_frame frames[1];
    size_t nf = 9;
    d = fresh();
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, frames, 1, &nf), LPSTACK_RESULT_OK);
    CHECK(nf == 1 && d.frame_count == 3 && frames[0].pc == 0x1005 && frames[0].kind == LPSTACK_FRAME_KIND_START,
          "nf %zu", nf);

    /* Read callbacks that fail, fail midway, read short, return garbage. */
    decide_with(u, set, s, 1, &d);
    CHECK(d.verdict == LPSTACK_VERDICT_UNRELIABLE && d.reason == LPSTACK_REASON_UNREADABLE && d.reason_addr == SP &&
              d.reason_detail == LPSTACK_MEMORY_ERROR_READ_FAILED && d.frame == 0,
          "fails: reason %u at %#llx", (unsigned)d.reason, (unsigned long long)d.reason_addr);
    decide_with(u, set, s, 2, &d);
    CHECK(d.verdict == LPSTACK_VERDICT_UNRELIABLE && d.reason == LPSTACK_REASON_UNREADABLE &&
              d.reason_addr == SP + 8 && d.frame == 1,
          "fails midway: reason %u at %#llx frame %u", (unsigned)d.reason, (unsigned long long)d.reason_addr, d.frame);
    decide_with(u, set, s, 3, &d);
    CHECK(d.verdict == LPSTACK_VERDICT_UNRELIABLE && d.reason == LPSTACK_REASON_UNREADABLE &&
              d.reason_detail == LPSTACK_MEMORY_ERROR_SHORT_READ,
          "short: reason %u detail %llu", (unsigned)d.reason, (unsigned long long)d.reason_detail);
    EXPECT(lpstack_decision_reason_text(&d, text, sizeof text, &n), LPSTACK_RESULT_OK);
    CHECK(strstr(text, "short read") != NULL && n == strlen(text), "text: %s", text);
    EXPECT(lpstack_decision_reason_text(&d, text, 4, &n), LPSTACK_RESULT_BUFFER_TOO_SMALL);
    decide_with(u, set, s, 4, &d);
    CHECK(d.verdict == LPSTACK_VERDICT_UNRELIABLE && d.reason == LPSTACK_REASON_NOT_TEXT &&
              d.reason_addr == 0x4141414141414141ull,
          "garbage: reason %u", (unsigned)d.reason);

    /* Inputs that are wrong rather than unreliable. */
    r.mode = 0;
    in = input(&r);
    in.size = 16;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_SIZE_TOO_SMALL);
    in = input(&r);
    in.known_mask |= 1ull << 20;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_INVALID_ARGUMENT);
    in = input(&r);
    in.stack_lo = STACK_HI;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_INVALID_ARGUMENT);
    in = input(&r);
    in.max_frames = 17; /* above the scratch's 16 */
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_INVALID_ARGUMENT);
    in = input(&r);
    in.read = NULL;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    in = input(&r);
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 4, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_thread_decide(u, set, &in, NULL, &d, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_thread_decide(NULL, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_thread_decide(u, set, NULL, s, &d, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    EXPECT(lpstack_thread_decide(u, set, &in, s, NULL, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    d = fresh();
    d.size = 8;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_SIZE_TOO_SMALL);
    CHECK(d.size == 8, "output written on failure");
    /* sp off the stack; rip unknown; a running thread. */
    in = input(&r);
    in.regs[7] = STACK_HI + 0x100;
    decide_with(u, set, s, 0, &d);
    d = fresh();
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.reason == LPSTACK_REASON_START_NOT_ON_STACK && d.reason_addr == STACK_HI + 0x100, "sp off stack");
    in = input(&r);
    in.known_mask = 1u << 7;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.reason == LPSTACK_REASON_MISSING_REGISTER, "no rip: reason %u", (unsigned)d.reason);
    in = input(&r);
    in.running = 1;
    in.read = NULL;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.verdict == LPSTACK_VERDICT_RUNNING && d.frame_count == 0, "running");
    /* User-mode registers on a kernel walk: in user mode, nothing to walk. */
    in = input(&r);
    in.full_regs = 1;
    in.cs = 0x33;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.verdict == LPSTACK_VERDICT_SWITCHABLE && d.end == LPSTACK_WALK_END_USER_REGS && d.frame_count == 0,
          "user mode");

    /* A batch with one bad element writes nothing. */
    struct reader rs[3] = {{0, 0}, {1, 0}, {0, 0}};
    lpstack_thread_input ins[3] = {input(&rs[0]), input(&rs[1]), input(&rs[2])};
    lpstack_decision outs[3] = {fresh(), fresh(), fresh()};
    ins[2].stack_hi = 1;
    EXPECT(lpstack_threads_decide(u, set, ins, 3, s, outs), LPSTACK_RESULT_INVALID_ARGUMENT);
    CHECK(outs[0].verdict == fresh().verdict && rs[0].calls == 0, "a batch wrote or read before failing");
    ins[2].stack_hi = STACK_HI;
    outs[1].size = 0; /* only the first element's size counts for outputs */
    EXPECT(lpstack_threads_decide(u, set, ins, 3, s, outs), LPSTACK_RESULT_OK);
    CHECK(outs[0].verdict == LPSTACK_VERDICT_BLOCKED && outs[1].verdict == LPSTACK_VERDICT_UNRELIABLE &&
              outs[2].verdict == LPSTACK_VERDICT_BLOCKED && outs[1].size == sizeof outs[1],
          "batch");

    /* A module: the same tables placed 1 MiB higher, answering only for
     * its text. A walk that starts in the module's f returns into g. */
    EXPECT(lpstack_unwinder_add_orc_tables(u, ip_table, sizeof ip_table, entries, sizeof entries, IP_TABLE + 0x100000,
                                           0, 0x101000, 0x100000),
           LPSTACK_RESULT_INVALID_ARGUMENT);
    in = input(&r);
    in.regs[16] = 0x101005;
    d = fresh();
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.reason == LPSTACK_REASON_NOT_TEXT && d.frame == 0, "before the module: reason %u", (unsigned)d.reason);
    EXPECT(lpstack_unwinder_add_orc_tables(u, ip_table, sizeof ip_table, entries, sizeof entries, IP_TABLE + 0x100000,
                                           0, 0x101000, 0x104000),
           LPSTACK_RESULT_OK);
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.reason == LPSTACK_REASON_NOT_TEXT && d.frame == 0, "declared text leaves the module out");
    EXPECT(lpstack_unwinder_add_text(u, 0x101000, 0x104000), LPSTACK_RESULT_OK);
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.verdict == LPSTACK_VERDICT_BLOCKED && d.frame == 1 && d.frame_count == 3, "through the module: %s %u",
          lpstack_verdict_name(d.verdict), (unsigned)d.reason);

    /* Frame-pointer rules and extra stacks: bad kinds and too many stacks. */
    lpstack_stack extra[9];
    memset(extra, 0, sizeof extra);
    for (int i = 0; i < 9; i++) {
        extra[i].size = sizeof extra[i];
        extra[i].start = 0x100000u * (uint64_t)(i + 1);
        extra[i].end = extra[i].start + 0x1000;
        extra[i].kind = LPSTACK_STACK_KIND_IRQ;
    }
    in = input(&r);
    in.extra_stacks = extra;
    in.extra_stack_count = 8;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_INVALID_ARGUMENT);
    in.extra_stack_count = 2;
    extra[1].kind = 42;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_INVALID_ARGUMENT);
    in.extra_stacks = NULL;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_NULL_ARGUMENT);
    /* The thread's stack given as an extra one only: the same walk. */
    in = input(&r);
    in.stack_lo = in.stack_hi = 0;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.reason == LPSTACK_REASON_START_NOT_ON_STACK, "no stack at all: reason %u", (unsigned)d.reason);
    extra[0].start = STACK_LO;
    extra[0].end = STACK_HI;
    extra[0].kind = LPSTACK_STACK_KIND_TASK;
    in.extra_stacks = extra;
    in.extra_stack_count = 1;
    EXPECT(lpstack_thread_decide(u, set, &in, s, &d, NULL, 0, NULL), LPSTACK_RESULT_OK);
    CHECK(d.verdict == LPSTACK_VERDICT_BLOCKED && d.frame_count == 3, "extra stack: %s",
          lpstack_verdict_name(d.verdict));

    lpstack_scratch_free(s);
    lpstack_patchset_free(set);
    lpstack_unwinder_free(u);
}

int main(void) {
    build_kernel();
    null_arguments();
    garbage_tables();
    sizes_and_ranges();
    walks();
    printf("bad_input: %d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
