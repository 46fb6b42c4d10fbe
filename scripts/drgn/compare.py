#!/usr/bin/env python3
"""Compare lpstack's per-task frames with drgn's.

usage: scripts/drgn/compare.py [--examples N] [--strict-start] LPSTACK.json DRGN.json

LPSTACK.json: `lpstack check DUMP --set F --format json --all-frames`.
DRGN.json:    scripts/drgn/frames.py DUMP VMLINUX.

Tasks are matched by pid; idle tasks (pid 0) by comm (swapper/N). Both sides
list one entry per physical frame: frame 0's pc is the innermost ip, later
pcs are return addresses. drgn goes on past the kernel entry into the user
stack (pt_regs of the syscall / interrupt, then user frames, often garbage):
frames from the first user-space pc on are dropped before comparing, and
counted separately. lpstack stops at the first unreliable point; drgn goes
on as far as it can.

Per task the kernel pc sequences are classed as
  identical        same sequence
  lpstack-shorter  lpstack's is a proper prefix of drgn's
  lpstack-longer   drgn's is a proper prefix of lpstack's
  start-shift      equal after dropping one leading frame on one side where
                   that frame is a context-switch frame (__switch_to_asm,
                   __switch_to, __schedule/context_switch): a convention
                   difference about where a blocked task's trace starts
  mismatch         the sequences differ in their common prefix
and, separately, drgn errors and tasks present on only one side.

Exit status: 1 if a blocked task (not on a CPU) is `mismatch` (or
`start-shift` with --strict-start), or a blocked task is missing from drgn's
output or hit a drgn error; else 0. Running tasks (on_cpu) are reported but
never fail the run: both tools start them from the CPU registers saved in
the dump (NT_PRSTATUS / QEMU CPU state), so differences there are worth a
look but may come from either side's reading of those notes.
"""

import argparse
import collections
import json
import sys

USER_LIMIT = 0xFFFF800000000000  # x86-64: kernel half starts here (4 and 5 level)
START_FRAMES = {"__switch_to_asm", "__switch_to", "__schedule", "context_switch"}


def key_of(t):
    if t["pid"] is None:  # drgn could not read the task_struct
        return ("task", t.get("task"))
    if t.get("idle") or t["pid"] == 0:
        return ("idle", t["comm"])
    return ("pid", t["pid"])


def bare(sym):
    """'park_here_a [lpstack_park]' -> 'park_here_a'."""
    if not sym:
        return sym
    return sym.split(" [", 1)[0]


def fmt_frame(f, lp_side):
    sym = f.get("symbol")
    off = f.get("offset")
    s = "%#x" % f["pc"]
    if sym:
        name, _, mod = sym.partition(" [")
        s += " %s+%#x" % (name, off or 0)
        if mod:
            s += " [" + mod
    elif not lp_side and f.get("lp_symbol"):
        s += " (%s)" % f["lp_symbol"]
    if lp_side:
        extra = []
        if f.get("kind") and f["kind"] not in ("call",):
            extra.append(f["kind"])
        if f.get("reliable") is False:
            extra.append("UNRELIABLE")
        if extra:
            s += " [" + ",".join(extra) + "]"
    else:
        if f.get("interrupted"):
            s += " [regs]"
        if f.get("inline"):
            s += " {inl: " + ",".join(x or "?" for x in f["inline"]) + "}"
    return s


def split_user(frames):
    """Drop drgn's user-space tail: everything from the first user pc on."""
    for i, f in enumerate(frames):
        if f["pc"] < USER_LIMIT:
            return frames[:i], frames[i:]
    return frames, []


def classify(lp, dr, dr_syms):
    """lp, dr: lists of pcs. Returns (class, index of first difference)."""
    n = min(len(lp), len(dr))
    for i in range(n):
        if lp[i] != dr[i]:
            # One extra context-switch frame at the start of either side?
            if i == 0:
                if len(dr) > 1 and dr[1:1 + len(lp)] == lp[:len(dr) - 1] \
                        and bare(dr_syms[0]) in START_FRAMES:
                    return "start-shift", 0
                if len(lp) > 1 and lp[1:1 + len(dr)] == dr[:len(lp) - 1]:
                    return "start-shift", 0
            return "mismatch", i
    if len(lp) == len(dr):
        return "identical", None
    return ("lpstack-shorter" if len(lp) < len(dr) else "lpstack-longer"), n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lpstack")
    ap.add_argument("drgn")
    ap.add_argument("--examples", type=int, default=3,
                    help="examples shown per class (default 3)")
    ap.add_argument("--strict-start", action="store_true",
                    help="count a start-shift on a blocked task as a failure")
    ap.add_argument("--show", type=int, nargs="*", default=None, metavar="PID",
                    help="tasks to show side by side whatever their class "
                         "(default: the running tasks and the first blocked "
                         "task with a module frame)")
    a = ap.parse_args()

    lpd = json.load(open(a.lpstack))
    drd = json.load(open(a.drgn))
    lp_tasks = {key_of(t): t for t in lpd["tasks"]}
    dr_tasks = {key_of(t): t for t in drd["tasks"]}

    out = []
    p = out.append
    kern = lpd.get("kernel", {})
    p("lpstack: %s tasks, kernel %s (build-id %s)" % (
        len(lpd["tasks"]), kern.get("release"), kern.get("build_id")))
    p("drgn %s: %s tasks, debug info load %.2f s, walk %.2f s" % (
        drd.get("drgn_version"), len(drd["tasks"]),
        drd.get("load_seconds", 0), drd.get("walk_seconds", 0)))
    p("")

    classes = collections.OrderedDict(
        (c, []) for c in ("identical", "lpstack-shorter", "lpstack-longer",
                          "start-shift", "mismatch"))
    only_lp, only_dr, errors = [], [], []
    user_tail = 0
    sp_diff = []  # (key, frame index) where pcs agree but sp differs
    failures = []
    n_frames_lp = n_frames_common = 0

    for key in list(lp_tasks) + [k for k in dr_tasks if k not in lp_tasks]:
        lt, dt = lp_tasks.get(key), dr_tasks.get(key)
        if dt is None:
            only_lp.append(lt)
            if not lt["on_cpu"]:
                failures.append("%s %s: not in drgn's output" % (key, lt["comm"]))
            continue
        if lt is None:
            only_dr.append(dt)
            continue
        if dt.get("error"):
            errors.append((lt, dt))
            if not lt["on_cpu"] and not dt["frames"]:
                failures.append("%s %s: drgn error %s" % (key, lt["comm"], dt["error"]))
        kframes, uframes = split_user(dt["frames"])
        if uframes:
            user_tail += 1
        lpcs = [f["pc"] for f in lt["frames"]]
        dpcs = [f["pc"] for f in kframes]
        # Name drgn's frames that it could not symbolise (module code without
        # module debug info) with lpstack's kallsyms name for the same pc.
        lp_sym_by_pc = {f["pc"]: "%s+%#x" % (f["symbol"], f["offset"] or 0)
                        for f in lt["frames"] if f.get("symbol")}
        for f in kframes:
            if not f.get("symbol") and f["pc"] in lp_sym_by_pc:
                f["lp_symbol"] = lp_sym_by_pc[f["pc"]]
        cls, at = classify(lpcs, dpcs, [f.get("symbol") for f in kframes])
        classes[cls].append((lt, dt, kframes, uframes, at))
        n_frames_lp += len(lpcs)
        if cls in ("identical", "lpstack-shorter", "lpstack-longer"):
            n_frames_common += min(len(lpcs), len(dpcs))
            for i in range(min(len(lpcs), len(dpcs))):
                lsp, dsp = lt["frames"][i].get("sp"), kframes[i].get("sp")
                if lsp is not None and dsp is not None and lsp != dsp:
                    sp_diff.append((lt, i, lsp, dsp))
        if not lt["on_cpu"] and (cls == "mismatch" or
                                 (cls == "start-shift" and a.strict_start)):
            failures.append("pid %s %s: %s at frame %s" % (lt["pid"], lt["comm"], cls, at))

    compared = sum(len(v) for v in classes.values())
    p("tasks compared: %d (lpstack only: %d, drgn only: %d)" % (
        compared, len(only_lp), len(only_dr)))
    p("frames: lpstack %d in all; %d in the common prefix of classes"
      " identical/shorter/longer" % (n_frames_lp, n_frames_common))
    for cls, items in classes.items():
        blocked = sum(1 for it in items if not it[0]["on_cpu"])
        p("  %-16s %4d  (blocked %d, running %d)" % (
            cls, len(items), blocked, len(items) - blocked))
    p("drgn per-task errors: %d" % len(errors))
    p("drgn traces that go on into user space (dropped, not compared): %d" % user_tail)
    p("frames with equal pc but different sp: %d" % len(sp_diff))
    p("")

    def show(lt, dt, kframes, uframes, at, why):
        p("  pid %s tgid %s %s%s: %s" % (
            lt["pid"], lt["tgid"], lt["comm"],
            " (running on cpu %s)" % lt["cpu"] if lt["on_cpu"] else "", why))
        if lt.get("unreliable"):
            p("    lpstack unreliable: %s" % json.dumps(lt["unreliable"]))
        n = max(len(lt["frames"]), len(kframes))
        if n == 0:
            p("    no kernel frames on either side (running in user mode)")
        for i in range(n):
            lf = lt["frames"][i] if i < len(lt["frames"]) else None
            df = kframes[i] if i < len(kframes) else None
            mark = "  " if (lf and df and lf["pc"] == df["pc"]) else "!="
            p("    %2d %s lpstack %-52s drgn %s" % (
                i, mark, fmt_frame(lf, True) if lf else "-",
                fmt_frame(df, False) if df else "-"))
        if uframes:
            p("       (drgn then: %s)" % ", ".join(fmt_frame(f, False) for f in uframes[:3]))
        if dt.get("error"):
            p("    drgn error: %s" % dt["error"])

    for cls, items in classes.items():
        if cls == "identical" or not items:
            continue
        p("== %s: %d" % (cls, len(items)))
        # Blocked tasks first, then running ones; distinct frame-0 symbols.
        items = sorted(items, key=lambda it: (it[0]["on_cpu"], it[0]["pid"]))
        shown, seen = 0, set()
        for it in items:
            lt = it[0]
            sig = (lt["on_cpu"], tuple(f.get("symbol") for f in lt["frames"][-2:]),
                   len(lt["frames"]))
            if sig in seen and not lt["on_cpu"]:
                continue
            seen.add(sig)
            show(*it, why="%s at frame %s" % (cls, it[4]))
            shown += 1
            if shown >= a.examples:
                break
        others = [("%s:%s" % (it[0]["pid"], it[0]["comm"])) for it in items]
        p("  all: %s" % " ".join(others))
        p("")

    # Side-by-side examples, whatever their class.
    by_pid = {}
    for items in classes.values():
        for it in items:
            by_pid.setdefault(it[0]["pid"], []).append(it)
    if a.show is None:
        picks = [it for items in classes.values() for it in items if it[0]["on_cpu"]]
        mod = [it for items in classes.values() for it in items
               if not it[0]["on_cpu"]
               and any(" [" in (f.get("symbol") or "") for f in it[0]["frames"])]
        picks += sorted(mod, key=lambda it: it[0]["pid"])[:1]
    else:
        picks = [it for pid in a.show for it in by_pid.get(pid, [])]
    if picks:
        p("== side by side (%s)" % ("chosen" if a.show is not None else
                                    "running tasks, first blocked task in a module"))
        for it in sorted(picks, key=lambda it: (it[0]["on_cpu"], it[0]["pid"])):
            cls = next(c for c, items in classes.items() if it in items)
            show(*it, why=cls)
        p("")

    if errors:
        p("== drgn errors")
        for lt, dt in errors[:a.examples]:
            p("  pid %s %s: %s" % (lt["pid"], lt["comm"], dt["error"]))
        p("")
    if only_lp or only_dr:
        p("== unmatched")
        for t in only_lp:
            p("  lpstack only: pid %s %s" % (t["pid"], t["comm"]))
        for t in only_dr:
            p("  drgn only: pid %s %s" % (t["pid"], t["comm"]))
        p("")
    if sp_diff:
        p("== sp differences (pc equal), first %d" % a.examples)
        for lt, i, lsp, dsp in sp_diff[:a.examples]:
            p("  pid %s %s frame %d: lpstack sp %#x drgn sp %#x (%+d)" % (
                lt["pid"], lt["comm"], i, lsp, dsp, dsp - lsp))
        p("")

    if failures:
        p("RESULT: FAIL (%d blocked task(s) differ):" % len(failures))
        for f in failures:
            p("  " + f)
    else:
        p("RESULT: OK (no blocked task differs from drgn in the common prefix)")
    print("\n".join(out))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
