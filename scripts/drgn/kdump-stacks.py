#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""drgn's stack trace of every task of a kernel dump, as text, with the stack
each frame's sp lies on (task, IRQ, exception/NMI, entry).

usage: scripts/drgn/kdump-stacks.py DUMP VMLINUX [MODULE.ko...] > drgn-stacks.txt

DUMP is a vmcore (here: the kdump scenario's makedumpfile output); VMLINUX
the DWARF vmlinux of Debian's -dbg package; the MODULE.ko files (unstripped)
give drgn the test modules' CFI and lines. Only the files given are loaded.

Written for tests/fixtures/vmcore/6.12.117+deb12-amd64-kdump/ (see "The
kdump scenario" in tests/fixtures/vmcore/README.md). Sections:

- the CPUs: per online CPU the task drgn finds running there (cpu_curr),
  the registers drgn starts from (the dump's NT_PRSTATUS note of that CPU:
  for the panicking CPU crash_setup_regs() in __crash_kexec, for the others
  the pt_regs the crash NMI interrupted), and that CPU's stack areas, read
  from the dump (task stack, hardirq_stack_ptr, cea_exception_stacks: DF,
  NMI, DB, MCE, VC, VC2; the cpu_entry_area's entry stack);
- the running tasks' traces, frame by frame: pc, sp, function+offset
  (symbol table), inlined functions, source line, and which stack the sp is
  on;
- a scan of each CPU's NMI and hardirq stacks: every 8-byte word that is a
  kernel text address, with its offset from the stack's top. This is NOT an
  unwind (no registers reach these stacks: the NMI's own frames are below
  the regs the note holds), only what is in memory there;
- for each CPU the crash NMI stopped: where that CPU was when the dump was
  taken, unwound by drgn from a reconstructed start. crash_nmi_callback()
  ends in halt() (paravirt-patched into a direct call of native_halt); the
  word on the CPU's NMI stack equal to that call's return address is the
  return slot of native_halt's frame, so the start is rip = the
  instruction after native_halt's hlt, rsp = that slot. drgn then crosses
  from the NMI stack into the interrupted context through asm_exc_nmi's
  pt_regs. This is a reconstruction (no note holds these registers), said
  so in the output; it is skipped when the slot is not found;
- every other task (blocked: drgn starts at inactive_task_frame), idle
  tasks last.
"""

import sys

import drgn
from drgn import Object, container_of
from drgn.helpers.linux.cpumask import for_each_online_cpu
from drgn.helpers.linux.percpu import per_cpu
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import cpu_curr, idle_task, task_cpu, task_state_to_char


def stack_areas(prog, cpu, task):
    """[(name, lo, hi)] of CPU's stacks (hi exclusive) and TASK's stack."""
    areas = []
    thread_size = thread_size_of(prog)
    tstack = task.stack.value_()
    areas.append(("task stack of pid %d" % task.pid.value_(), tstack, tstack + thread_size))
    try:
        try:
            top = per_cpu(prog["pcpu_hot"], cpu).hardirq_stack_ptr.value_()  # 6.2+
        except KeyError:
            top = per_cpu(prog["hardirq_stack_ptr"], cpu).value_()
        # hardirq_stack_ptr points 8 bytes below the top of irq_stack_backing_store
        # (arch/x86/kernel/irq_64.c: map_irq_stack: va + IRQ_STACK_SIZE - 8).
        hi = top + 8
        areas.append(("hardirq stack", hi - thread_size, hi))
    except (KeyError, LookupError) as e:
        areas.append(("hardirq stack: %s" % e, 0, 0))
    try:
        es = per_cpu(prog["cea_exception_stacks"], cpu)
        for name in ("DF", "NMI", "DB", "MCE", "VC", "VC2"):
            try:
                st = es.member_(name + "_stack")
            except LookupError:
                continue
            lo = st.address_
            if sizeof(st):
                areas.append(("exception stack %s" % name, lo, lo + sizeof(st)))
        cea = container_of(es, "struct cpu_entry_area", "estacks")
        ent = cea.entry_stack_page
        areas.append(("entry stack", ent.address_, ent.address_ + sizeof(ent)))
    except (KeyError, LookupError) as e:
        areas.append(("exception stacks: %s" % e, 0, 0))
    return areas


def sizeof(obj):
    """Size of OBJ's type; 0 for an array whose length DWARF leaves open."""
    t = obj.type_
    try:
        return t.size
    except (AttributeError, ValueError):
        if t.length is None:
            return 0
        return t.length * t.type.size


def thread_size_of(prog):
    """THREAD_SIZE, from the linker script's symbols around init_stack
    (INIT_TASK_DATA: __end_init_stack = __start_init_stack + THREAD_SIZE)."""
    return prog.symbol("__end_init_stack").address - prog.symbol("__start_init_stack").address


def where(areas, sp):
    if sp is None:
        return "?"
    if sp < 0xffff800000000000:
        return "user"
    for name, lo, hi in areas:
        if lo <= sp < hi:
            return "%s (0x%x below its top)" % (name, hi - sp)
    return "no known stack"


def symname(prog, pc, caller=False):
    """function+off/size [module] of PC; CALLER: PC is a return address, named
    by the call instruction before it (a call to a noreturn function may be
    the last instruction of its function)."""
    try:
        s = prog.symbol(pc - 1 if caller else pc)
        mod = ""
        try:
            m = prog.module(pc)
            if m.name != "kernel":
                mod = " [%s]" % m.name
        except (LookupError, AttributeError):
            pass
        return "%s+0x%x/0x%x%s" % (s.name, pc - s.address, s.size, mod)
    except LookupError:
        return "0x%x" % pc


def print_trace(prog, task, areas, out):
    try:
        trace = prog.stack_trace(task)
    except Exception as e:  # noqa: BLE001
        out.append("    drgn: %s: %s" % (type(e).__name__, e))
        return
    pending = []
    n = 0
    try:
        frames = list(trace)
    except Exception as e:  # noqa: BLE001
        out.append("    drgn: %s: %s" % (type(e).__name__, e))
        return
    for frame in frames:
        name = None
        try:
            name = frame.name
        except Exception:  # noqa: BLE001
            pass
        if frame.is_inline:
            pending.append(name)
            continue
        try:
            sp = frame.sp
        except (LookupError, ValueError):
            sp = None
        try:
            src = "%s:%d" % frame.source()[:2]
        except (LookupError, TypeError, ValueError):
            src = ""
        if "/klp/" in src:  # the test modules' build directory
            src = src.split("/klp/", 1)[1]
        inl = (" inline: " + " <- ".join(str(p) for p in pending)) if pending else ""
        pending = []
        out.append("    #%-2d pc 0x%016x sp %s %s%s%s%s  [%s]" % (
            n, frame.pc, ("0x%016x" % sp) if sp is not None else "?",
            symname(prog, frame.pc, caller=n > 0 and not frame.interrupted), inl,
            " (interrupted)" if frame.interrupted else "",
            ("  " + src) if src else "", where(areas, sp)))
        n += 1


def scan(prog, name, lo, hi, out):
    out.append("  %s 0x%x-0x%x:" % (name, lo, hi))
    try:
        data = prog.read(lo, hi - lo)
    except drgn.FaultError as e:
        out.append("    not in the dump: %s" % e)
        return
    found = 0
    for off in range(0, len(data), 8):
        v = int.from_bytes(data[off:off + 8], "little")
        if v < 0xffffffff80000000:
            continue
        try:
            s = prog.symbol(v)
        except LookupError:
            continue
        if s.kind != drgn.SymbolKind.FUNC and s.binding not in (drgn.SymbolBinding.GLOBAL,
                                                                  drgn.SymbolBinding.LOCAL):
            continue
        if s.kind != drgn.SymbolKind.FUNC:
            continue
        out.append("    top-0x%04x (0x%x): 0x%x %s" % (hi - (lo + off), lo + off, v, symname(prog, v)))
        found += 1
    if not found:
        out.append("    (no kernel text addresses; %s)" % (
            "all zero" if not any(data) else "other data only"))


def halt_start(prog, nmi_lo, nmi_hi):
    """(rip, rsp, how) of a CPU halted at the end of crash_nmi_callback, or
    (None, None, why not)."""
    try:
        cb = prog.symbol("crash_nmi_callback")
        nh = prog.symbol("native_halt")
    except LookupError as e:
        return None, None, "no symbol: %s" % e
    code = prog.read(cb.address, cb.size)
    ret = None
    for i in range(len(code) - 4):
        if code[i] != 0xE8:
            continue
        tgt = (cb.address + i + 5 + int.from_bytes(code[i + 1:i + 5], "little", signed=True)) % (1 << 64)
        if tgt == nh.address:
            ret = cb.address + i + 5
    if ret is None:
        return None, None, "crash_nmi_callback has no direct call of native_halt in the dump"
    hcode = prog.read(nh.address, nh.size)
    if 0xF4 not in hcode:
        return None, None, "native_halt has no hlt"
    rip = nh.address + hcode.index(0xF4) + 1
    data = prog.read(nmi_lo, nmi_hi - nmi_lo)
    slots = [nmi_lo + o for o in range(0, len(data), 8)
             if int.from_bytes(data[o:o + 8], "little") == ret]
    if not slots:
        return None, None, "no 0x%x (crash_nmi_callback+0x%x) on the NMI stack" % (ret, ret - cb.address)
    return rip, slots[0], (
        "rip 0x%x = native_halt+0x%x (after its hlt), rsp 0x%x = the NMI stack slot (top-0x%x) "
        "holding 0x%x = crash_nmi_callback+0x%x, the return address of its call of native_halt "
        "(halt(), paravirt-patched into a direct call)" % (
            rip, rip - nh.address, slots[0], nmi_hi - slots[0], ret, ret - cb.address))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    dump, vmlinux = sys.argv[1], sys.argv[2]
    prog = drgn.Program()
    prog.set_core_dump(dump)
    prog.load_debug_info([vmlinux], default=False, main=True)
    if sys.argv[3:]:
        try:
            prog.load_debug_info(sys.argv[3:], default=False)
        except drgn.MissingDebugInfoError as e:
            print("kdump-stacks.py: %s" % str(e).splitlines()[0], file=sys.stderr)
    try:
        from drgn.helpers.linux.kallsyms import load_module_kallsyms
        prog.register_symbol_finder("module_kallsyms", load_module_kallsyms(prog),
                                    enable_index=-1)
    except Exception as e:  # noqa: BLE001
        print("kdump-stacks.py: no module kallsyms: %s" % e, file=sys.stderr)

    out = ["# drgn %s, dump %s, vmlinux %s, modules given: %s" % (
        drgn.__version__, dump.rsplit("/", 1)[-1], vmlinux.rsplit("/", 1)[-1],
        " ".join(a.rsplit("/", 1)[-1] for a in sys.argv[3:]) or "none")]
    try:
        crashed = prog.crashed_thread()
        out.append("# drgn's crashed thread: pid %d (%s)" % (
            crashed.tid, crashed.object.comm.string_().decode()))
    except Exception as e:  # noqa: BLE001
        crashed = None
        out.append("# drgn's crashed thread: %s" % e)
    out.append("# Frames: one line per physical frame (drgn's inline frames folded into it,")
    out.append("# innermost first); pc is the return address from frame 1 on; [where] is the")
    out.append("# stack the frame's sp lies on, from the dump's own per-CPU data.")
    out.append("")

    running = {}
    out.append("## CPUs")
    for cpu in for_each_online_cpu(prog):
        t = cpu_curr(prog, cpu)
        areas = stack_areas(prog, cpu, t)
        running[t.value_()] = (cpu, areas)
        out.append("CPU %d: cpu_curr pid %d comm %s state %s%s" % (
            cpu, t.pid.value_(), t.comm.string_().decode(), task_state_to_char(t),
            "  <- drgn's crashed thread (the panicking CPU)" if crashed is not None
            and crashed.tid == t.pid.value_() else ""))
        try:
            th = prog.thread(t.pid.value_())
            regs = prog.stack_trace(t)[0].registers()
            out.append("  initial registers (the dump's note for this CPU): rip 0x%x rsp 0x%x rbp 0x%x" % (
                regs.get("rip", 0), regs.get("rsp", 0), regs.get("rbp", 0)))
            del th
        except Exception as e:  # noqa: BLE001
            out.append("  initial registers: %s" % e)
        for name, lo, hi in areas:
            out.append("  %-28s 0x%016x-0x%016x" % (name, lo, hi))
    out.append("")

    out.append("## Running tasks (on a CPU at the crash)")
    for cpu in for_each_online_cpu(prog):
        t = cpu_curr(prog, cpu)
        areas = running[t.value_()][1]
        out.append("pid %d tgid %d comm %s state %s, on CPU %d" % (
            t.pid.value_(), t.tgid.value_(), t.comm.string_().decode(),
            task_state_to_char(t), cpu))
        print_trace(prog, t, areas, out)
    out.append("")

    out.append("## Scan of the NMI and hardirq stacks (kernel text addresses in memory; not an unwind)")
    for cpu in for_each_online_cpu(prog):
        t = cpu_curr(prog, cpu)
        for name, lo, hi in running[t.value_()][1]:
            if name in ("exception stack NMI", "hardirq stack") and hi > lo:
                scan(prog, "CPU %d %s" % (cpu, name), lo, hi, out)
    out.append("")

    out.append("## CPUs stopped by the crash NMI: where they were when the dump was taken")
    out.append("# A reconstructed start (no note holds these registers), then drgn's unwind;")
    out.append("# see the header of scripts/drgn/kdump-stacks.py.")
    for cpu in for_each_online_cpu(prog):
        t = cpu_curr(prog, cpu)
        if crashed is not None and crashed.tid == t.pid.value_():
            continue
        areas = running[t.value_()][1]
        nmi = [(lo, hi) for name, lo, hi in areas if name == "exception stack NMI"]
        if not nmi:
            out.append("CPU %d: no NMI stack found" % cpu)
            continue
        rip, rsp, how = halt_start(prog, *nmi[0])
        out.append("CPU %d (cpu_curr pid %d comm %s): %s" % (
            cpu, t.pid.value_(), t.comm.string_().decode(), how))
        if rip is None:
            continue
        regs = Object(prog, "struct pt_regs", value={
            "ip": rip, "sp": rsp, "cs": 0x10, "ss": 0x18, "flags": 0x2})
        print_trace(prog, regs, areas, out)
    out.append("")

    out.append("## Every other task")
    tasks = sorted(for_each_task(prog), key=lambda t: t.pid.value_())
    idles = [idle_task(prog, c) for c in for_each_online_cpu(prog)]
    for t in tasks + idles:
        if t.value_() in running:
            continue
        areas = stack_areas(prog, task_cpu(t), t)
        out.append("pid %d tgid %d comm %s state %s cpu %d%s" % (
            t.pid.value_(), t.tgid.value_(), t.comm.string_().decode(),
            task_state_to_char(t), task_cpu(t), " (idle task)" if t in idles else ""))
        print_trace(prog, t, areas, out)
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
