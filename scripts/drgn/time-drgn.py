#!/usr/bin/env python3
"""Time drgn on a dump: debug-info loading, then every task's stack trace.

usage: scripts/drgn/time-drgn.py DUMP VMLINUX [pc|name|symbol]

Prints one JSON line:
  {"import": s, "load": s, "walk": s, "tasks": n, "frames": n, "errors": n}
  import: `import drgn` and its Linux helpers
  load:   Program(), set_core_dump(DUMP), load_debug_info([VMLINUX]) and one
          type lookup (struct task_struct), which makes drgn index vmlinux's
          DWARF (it does that lazily, on the first lookup)
  walk:   for_each_task + each online CPU's idle task: prog.stack_trace(task)
          and, per frame (drgn's frames: inline ones too, and the user-space
          frames it unwinds after the kernel entry):
            pc      frame.pc only (the unwinding alone; default)
            name    frame.pc and frame.name (DWARF function name, what
                    drgn's `bt` prints)
            symbol  frame.pc and frame.symbol().name (ELF symbol table, like
                    lpstack's kallsyms names; drgn 0.3.0 takes ~1 ms a lookup)
"""
import json
import sys
import time

t0 = time.monotonic()
import drgn  # noqa: E402
from drgn.helpers.linux.cpumask import for_each_online_cpu  # noqa: E402
from drgn.helpers.linux.pid import for_each_task  # noqa: E402
from drgn.helpers.linux.sched import idle_task  # noqa: E402


def walk_pc(prog, task):
    n = 0
    for frame in prog.stack_trace(task):
        frame.pc
        n += 1
    return n


def walk_name(prog, task):
    n = 0
    for frame in prog.stack_trace(task):
        frame.pc
        frame.name
        n += 1
    return n


def walk_symbol(prog, task):
    n = 0
    for frame in prog.stack_trace(task):
        frame.pc
        try:
            frame.symbol().name
        except LookupError:
            pass
        n += 1
    return n


WALKS = {"pc": walk_pc, "name": walk_name, "symbol": walk_symbol}


def main():
    dump, vmlinux = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "pc"
    walk = WALKS[mode]
    t1 = time.monotonic()
    prog = drgn.Program()
    prog.set_core_dump(dump)
    prog.load_debug_info([vmlinux], default=False, main=True)
    # drgn indexes the DWARF lazily, on the first lookup: do one here so
    # that the indexing counts as loading, not as walking.
    prog.type("struct task_struct")
    t2 = time.monotonic()
    tasks = frames = errors = 0

    def one(task):
        nonlocal tasks, frames, errors
        tasks += 1
        try:
            frames += walk(prog, task)
        except Exception:  # noqa: BLE001
            errors += 1

    for task in for_each_task(prog):
        one(task)
    for cpu in for_each_online_cpu(prog):
        one(idle_task(prog, cpu))
    t3 = time.monotonic()
    print(json.dumps({"mode": mode, "import": round(t1 - t0, 4), "load": round(t2 - t1, 4),
                      "walk": round(t3 - t2, 4), "tasks": tasks,
                      "frames": frames, "errors": errors}))


if __name__ == "__main__":
    main()
