/* ptrace_shim: may each thread of a running process switch to patched code?
 *
 *     ptrace_shim PID [FUNCS_TXT]
 *
 * Only the lpstack C API and Linux: every thread is stopped with
 * PTRACE_SEIZE + PTRACE_INTERRUPT, a userspace unwinder is built from the
 * executable mappings in /proc/PID/maps, each thread's registers come from
 * PTRACE_GETREGS and its stack is read with process_vm_readv inside the
 * read callback. One line per thread is printed, then all are detached.
 * FUNCS_TXT lists the patched functions (`[object:]function[,sympos]`;
 * the object defaults to the executable's file name).
 *
 * Exit status: 0 every thread may switch, 1 some cannot, 2 error,
 * 77 ptrace is not permitted here.
 *
 * Build: cc -Wall -O2 ptrace_shim.c $(pkg-config --cflags --libs lpstack) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* process_vm_readv */
#endif
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lpstack.h"

#define MAX_THREADS 1024
#define MAX_MAPS 4096

struct mapping {
    uint64_t start, end, offset;
    char perms[8];
    char path[512];
};

static struct mapping maps[MAX_MAPS];
static size_t n_maps;

static int fail(const char *what, lpstack_result r) {
    char text[512] = "";
    size_t n;
    if (lpstack_last_error(text, sizeof text, &n) != LPSTACK_RESULT_OK)
        text[0] = 0;
    fprintf(stderr, "ptrace_shim: %s: %s: %s\n", what, lpstack_result_message(r), text);
    return 2;
}

/* The whole of a file (or NULL), for lpstack to copy what it needs. */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = (unsigned char *)malloc((size_t)size)) != NULL &&
            fread(buf, 1, (size_t)size, f) != (size_t)size) {
            free(buf);
            buf = NULL;
        }
        *len = size > 0 ? (size_t)size : 0;
    }
    fclose(f);
    return buf;
}

/* /proc/PID/maps: "start-end perms offset dev inode path". */
static int read_maps(pid_t pid) {
    char name[64], line[1024];
    snprintf(name, sizeof name, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(name, "r");
    if (!f)
        return -1;
    while (n_maps < MAX_MAPS && fgets(line, sizeof line, f)) {
        struct mapping *m = &maps[n_maps];
        int path_at = 0;
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %*s %*s %n", &m->start, &m->end, m->perms,
                   &m->offset, &path_at) < 4)
            continue;
        snprintf(m->path, sizeof m->path, "%s", line + path_at);
        m->path[strcspn(m->path, "\n")] = 0;
        n_maps++;
    }
    fclose(f);
    return 0;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The read callback: the target's memory, through process_vm_readv. */
static int read_remote(void *ctx, uint64_t addr, void *buf, size_t len) {
    pid_t pid = *(pid_t *)ctx;
    struct iovec local = {buf, len};
    struct iovec remote = {(void *)(uintptr_t)addr, len};
    ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (got == (ssize_t)len)
        return 0;
    return got > 0 ? 1 : -1; /* a short read, or nothing */
}

/* Every executable file mapping (and the vdso, read from memory). */
static lpstack_result build_unwinder(pid_t pid, lpstack_unwinder **out) {
    lpstack_unwinder *u;
    lpstack_result r = lpstack_unwinder_new_user(&u);
    if (r != LPSTACK_RESULT_OK)
        return r;
    for (size_t i = 0; i < n_maps; i++) {
        const struct mapping *m = &maps[i];
        if (!strchr(m->perms, 'x'))
            continue;
        size_t len = 0;
        unsigned char *elf = NULL;
        const char *name = base_name(m->path);
        if (m->path[0] == '/') {
            char at[600]; /* through the target's root, as it sees its files */
            snprintf(at, sizeof at, "/proc/%d/root%s", (int)pid, m->path);
            elf = slurp(at, &len);
        } else if (strcmp(m->path, "[vdso]") == 0) {
            len = (size_t)(m->end - m->start);
            elf = (unsigned char *)malloc(len);
            if (elf && read_remote(&pid, m->start, elf, len) != 0) {
                free(elf);
                elf = NULL;
            }
        }
        if (!elf)
            continue; /* no file: pcs there are not code, walks through them unreliable */
        r = lpstack_unwinder_add_mapping(u, name, elf, len, m->start, m->end, m->offset);
        free(elf);
        if (r != LPSTACK_RESULT_OK)
            fprintf(stderr, "ptrace_shim: skipping %s: %s\n", m->path, lpstack_result_message(r));
    }
    *out = u;
    return LPSTACK_RESULT_OK;
}

/* Does the set name a function of object `name`? */
static int set_names_object(const lpstack_patchset *set, const char *name) {
    for (size_t i = 0; i < lpstack_patchset_len(set); i++) {
        lpstack_range f;
        memset(&f, 0, sizeof f);
        f.size = sizeof f;
        if (lpstack_patchset_get(set, i, &f) == LPSTACK_RESULT_OK && strcmp(f.object, name) == 0)
            return 1;
    }
    return 0;
}

/* Opts in to inlined copies: the DWARF of every module holding a patched
 * function (from the file, or its debug file as gdb finds it). Without
 * it, a thread inside a copy of a patched function inlined into another
 * function would look switchable. */
static void load_dwarf(pid_t pid, lpstack_unwinder *u, const lpstack_patchset *set) {
    for (size_t i = 0; i < n_maps; i++) {
        const struct mapping *m = &maps[i];
        const char *name = base_name(m->path);
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            seen |= strcmp(maps[j].path, m->path) == 0 && strchr(maps[j].perms, 'x') != NULL;
        if (!strchr(m->perms, 'x') || m->path[0] != '/' || seen || !set_names_object(set, name))
            continue;
        char at[600];
        snprintf(at, sizeof at, "/proc/%d/root%s", (int)pid, m->path);
        lpstack_result r = lpstack_unwinder_load_dwarf(u, name, at);
        if (r != LPSTACK_RESULT_OK)
            fprintf(stderr, "ptrace_shim: %s: inlined copies not checked: %s\n", name, lpstack_result_message(r));
    }
}

/* Fills an input from a stopped thread's registers. */
static void thread_input(pid_t *pid, const struct user_regs_struct *regs, lpstack_thread_input *in) {
    memset(in, 0, sizeof *in);
    in->size = sizeof *in;
    /* DWARF order: rax rdx rcx rbx rsi rdi rbp rsp r8..r15 rip. */
    const unsigned long long v[17] = {regs->rax, regs->rdx, regs->rcx, regs->rbx, regs->rsi, regs->rdi,
                                      regs->rbp, regs->rsp, regs->r8,  regs->r9,  regs->r10, regs->r11,
                                      regs->r12, regs->r13, regs->r14, regs->r15, regs->rip};
    for (int i = 0; i < 17; i++)
        in->regs[i] = v[i];
    in->known_mask = (1u << 17) - 1;
    in->cs = regs->cs;
    in->full_regs = 1;
    in->signal = 1; /* rip is where it stopped, not a return address */
    for (size_t i = 0; i < n_maps; i++)
        if (maps[i].start <= regs->rsp && regs->rsp < maps[i].end) {
            in->stack_lo = maps[i].start;
            in->stack_hi = maps[i].end;
        }
    in->read = read_remote;
    in->read_ctx = pid;
}

static void print_decision(pid_t tid, const lpstack_decision *d, const lpstack_patchset *set) {
    printf("tid %d: %s", (int)tid, lpstack_verdict_name(d->verdict));
    if (d->verdict == LPSTACK_VERDICT_BLOCKED) {
        lpstack_range f;
        memset(&f, 0, sizeof f);
        f.size = sizeof f;
        if (lpstack_patchset_get(set, d->blocking_function, &f) == LPSTACK_RESULT_OK)
            printf(" in %s:%s", f.object, f.function);
        printf(" at frame %u (pc %#" PRIx64 ")%s", d->frame, d->pc, d->inlined ? ", inlined" : "");
    } else if (d->verdict == LPSTACK_VERDICT_UNRELIABLE) {
        char why[256] = "";
        size_t n;
        lpstack_decision_reason_text(d, why, sizeof why, &n);
        printf(" at frame %u: %s", d->frame, why);
    }
    printf(" (%u frames)\n", d->frame_count);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ptrace_shim PID [FUNCS_TXT]\n");
        return 2;
    }
    pid_t pid = (pid_t)atoi(argv[1]);

    /* Stop every thread: seize, interrupt, wait for the stop. */
    static pid_t tids[MAX_THREADS];
    size_t n_tids = 0;
    char dir_name[64];
    snprintf(dir_name, sizeof dir_name, "/proc/%d/task", (int)pid);
    DIR *dir = opendir(dir_name);
    if (!dir) {
        perror(dir_name);
        return 2;
    }
    struct dirent *e;
    while (n_tids < MAX_THREADS && (e = readdir(dir)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid <= 0)
            continue;
        if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
            int err = errno;
            fprintf(stderr, "ptrace_shim: PTRACE_SEIZE %d: %s\n", (int)tid, strerror(err));
            closedir(dir);
            return err == EPERM ? 77 : 2;
        }
        int status;
        if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) == 0 && waitpid(tid, &status, __WALL) == tid)
            tids[n_tids++] = tid;
    }
    closedir(dir);
    if (read_maps(pid) != 0) {
        fprintf(stderr, "ptrace_shim: cannot read /proc/%d/maps\n", (int)pid);
        return 2;
    }

    lpstack_unwinder *u = NULL;
    lpstack_patchset *set = NULL;
    lpstack_scratch *scratch = NULL;
    lpstack_result r = build_unwinder(pid, &u);
    if (r != LPSTACK_RESULT_OK)
        return fail("unwinder", r);
    char exe[600] = "", exe_link[64];
    snprintf(exe_link, sizeof exe_link, "/proc/%d/exe", (int)pid);
    ssize_t exe_len = readlink(exe_link, exe, sizeof exe - 1);
    exe[exe_len > 0 ? exe_len : 0] = 0;
    size_t funcs_len = 0;
    unsigned char *funcs = argc > 2 ? slurp(argv[2], &funcs_len) : NULL;
    char *text = (char *)calloc(funcs_len + 1, 1);
    if (text && funcs)
        memcpy(text, funcs, funcs_len);
    free(funcs);
    r = lpstack_patchset_new_from_text(text ? text : "", base_name(exe), u, &set);
    free(text);
    if (r != LPSTACK_RESULT_OK)
        return fail("funcs.txt", r);
    load_dwarf(pid, u, set);
    if ((r = lpstack_scratch_new(0, &scratch)) != LPSTACK_RESULT_OK)
        return fail("scratch", r);

    int all_switchable = 1;
    for (size_t i = 0; i < n_tids; i++) {
        struct user_regs_struct regs;
        lpstack_thread_input in;
        if (ptrace(PTRACE_GETREGS, tids[i], 0, &regs) == 0) {
            thread_input(&pid, &regs, &in);
        } else {
            memset(&in, 0, sizeof in); /* could not stop it: RUNNING */
            in.size = sizeof in;
            in.running = 1;
        }
        lpstack_decision d;
        memset(&d, 0, sizeof d);
        d.size = sizeof d;
        r = lpstack_thread_decide(u, set, &in, scratch, &d, NULL, 0, NULL);
        if (r != LPSTACK_RESULT_OK)
            return fail("decide", r);
        print_decision(tids[i], &d, set);
        all_switchable &= d.verdict == LPSTACK_VERDICT_SWITCHABLE;
    }

    for (size_t i = 0; i < n_tids; i++)
        ptrace(PTRACE_DETACH, tids[i], 0, 0);
    lpstack_scratch_free(scratch);
    lpstack_patchset_free(set);
    lpstack_unwinder_free(u);
    return all_switchable ? 0 : 1;
}
