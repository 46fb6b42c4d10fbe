#!/usr/bin/env python3
"""Dump every task's kernel stack, as drgn unwinds it, as JSON.

usage: scripts/drgn/frames.py DUMP VMLINUX [EXTRA_DEBUG_FILE_OR_DIR...] > drgn.json

DUMP is a vmcore (ELF or kdump-compressed) with VMCOREINFO; VMLINUX is the
matching vmlinux with DWARF (Debian's -dbg package). Extra arguments are
module debug files (.ko / .ko.debug) or directories searched recursively for
them; drgn uses them for module frames' symbols and CFI. Only the files given
are loaded (default=False): nothing is looked up on the host.

Output:
  {"drgn_version", "dump", "vmlinux", "load_seconds", "walk_seconds",
   "modules_loaded": [...],
   "tasks": [{"pid", "tgid", "comm", "cpu", "on_cpu", "idle",
              "frames": [{"pc", "sp", "symbol", "offset", "inline": [names]}],
              "error": str|null}]}

One entry per physical frame: drgn reports an inlined call as extra frames
with the same pc and sp (frame.is_inline); they are folded into the physical
frame that follows them ("inline" lists the inlined functions' names,
innermost first). Frame 0's pc is the innermost ip; later frames' pc is the
return address (drgn's frame.pc), as in lpstack's JSON.
"""

import json
import os
import sys
import time

import drgn
from drgn.helpers.linux.cpumask import for_each_online_cpu
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import idle_task


def collect_debug_files(args):
    out = []
    for a in args:
        if os.path.isdir(a):
            for d, _, files in os.walk(a):
                for f in sorted(files):
                    if f.endswith((".ko", ".ko.debug")):
                        out.append(os.path.join(d, f))
        else:
            out.append(a)
    return out


def frame_symbol(prog, frame):
    """(name, offset) for a physical frame's pc, from the ELF symbol table
    (kallsyms-like: the containing non-inlined function)."""
    try:
        sym = frame.symbol()
        return sym.name, frame.pc - sym.address
    except LookupError:
        pass
    try:
        sym = prog.symbol(frame.pc)
        return sym.name, frame.pc - sym.address
    except LookupError:
        return None, None


def task_record(prog, task, idle):
    try:
        return task_record1(prog, task, idle)
    except Exception as e:  # noqa: BLE001 - e.g. the task_struct not in the dump
        return {"pid": None, "tgid": None, "comm": None, "idle": idle,
                "task": hex(task.value_()), "frames": [],
                "error": "%s: %s" % (type(e).__name__, e)}


def task_record1(prog, task, idle):
    rec = {
        "pid": int(task.pid),
        "tgid": int(task.tgid),
        "comm": task.comm.string_().decode("utf-8", "replace"),
        "idle": idle,
        "frames": [],
        "error": None,
    }
    try:
        # thread_info.cpu (CONFIG_THREAD_INFO_IN_TASK) or task->cpu.
        try:
            rec["cpu"] = int(task.thread_info.cpu)
        except (AttributeError, LookupError):
            rec["cpu"] = int(task.cpu)
    except Exception:
        rec["cpu"] = None
    try:
        rec["on_cpu"] = bool(task.on_cpu)
    except Exception:
        rec["on_cpu"] = None
    try:
        trace = prog.stack_trace(task)
    except Exception as e:  # noqa: BLE001 - record any failure per task
        rec["error"] = "%s: %s" % (type(e).__name__, e)
        return rec
    pending_inline = []
    try:
        for frame in trace:
            name = None
            try:
                name = frame.name
            except Exception:
                pass
            if frame.is_inline:
                pending_inline.append(name)
                continue
            try:
                sp = frame.sp
            except (LookupError, ValueError):
                sp = None
            sym, off = frame_symbol(prog, frame)
            rec["frames"].append({
                "pc": frame.pc,
                "sp": sp,
                "symbol": sym,
                "offset": off,
                "function": name,
                "interrupted": bool(frame.interrupted),
                "inline": pending_inline,
            })
            pending_inline = []
    except Exception as e:  # noqa: BLE001
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    return rec


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    dump, vmlinux = sys.argv[1], sys.argv[2]
    extra = collect_debug_files(sys.argv[3:])

    t0 = time.monotonic()
    prog = drgn.Program()
    prog.set_core_dump(dump)
    # vmlinux first: drgn can only enumerate the loaded modules (and so
    # match module files to them) once it has the kernel's debug info.
    prog.load_debug_info([vmlinux], default=False, main=True)
    if extra:
        try:
            prog.load_debug_info(extra, default=False)
        except drgn.MissingDebugInfoError as e:
            print("frames.py: %s" % str(e).splitlines()[0], file=sys.stderr)
    t1 = time.monotonic()
    # Names for module code whose debug info was not given: the modules'
    # kallsyms from the dump (symbol names only; drgn unwinds module frames
    # with what it has either way). Not counted in load_seconds.
    try:
        from drgn.helpers.linux.kallsyms import load_module_kallsyms
        prog.register_symbol_finder("module_kallsyms", load_module_kallsyms(prog),
                                    enable_index=-1)
    except Exception as e:  # noqa: BLE001 - names only
        print("frames.py: no module kallsyms: %s" % e, file=sys.stderr)
    t1b = time.monotonic()

    modules_loaded = []
    try:
        for m in prog.modules():
            modules_loaded.append({
                "name": m.name,
                "debug_file": getattr(m, "debug_file_path", None)})
    except Exception:
        pass

    tasks = []
    walk_error = None
    try:
        for task in for_each_task(prog):
            tasks.append(task_record(prog, task, False))
        for cpu in for_each_online_cpu(prog):
            tasks.append(task_record(prog, idle_task(prog, cpu), True))
    except Exception as e:  # noqa: BLE001 - the task list itself unreadable
        walk_error = "%s: %s" % (type(e).__name__, e)
        print("frames.py: task walk stopped: %s" % walk_error, file=sys.stderr)
    t2 = time.monotonic()
    t2 -= t1b - t1  # the kallsyms setup above is neither load nor walk

    json.dump({
        "drgn_version": drgn.__version__,
        "dump": os.path.abspath(dump),
        "vmlinux": os.path.abspath(vmlinux),
        "load_seconds": round(t1 - t0, 4),
        "walk_seconds": round(t2 - t1, 4),
        "modules_loaded": modules_loaded,
        "walk_error": walk_error,
        "tasks": tasks,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
