#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Post-process one lpstack vmcore run.

usage: extract.py RUNDIR FIXTUREDIR RELEASE [FUNCS]

RUNDIR holds what the run produced (console.log = guest ttyS0 with the
kernel console, report.log = guest ttyS1 with /init's report, qmp.log,
vmcore.*). Writes into FIXTUREDIR (committed, small text only):
ground-truth.txt, console-tail.txt, guest-report.txt, stacks.txt,
vmcoreinfo.txt, funcs.txt, and appends to run-info.txt. Also reassembles
QEMU's flattened kdump files into RUNDIR/vmcore.<fmt>.reassembled.

funcs.txt is a copy of FUNCS when given (the livepatch scenarios), else the
default scenario's set.

The kdump scenario (a real kdump: no vmcore.elf, the makedumpfile outputs
vmcore.kdump-lzo/-zlib/-zstd read back from the capture kernel's disk)
takes VMCOREINFO and the CPU notes from vmcore.kdump-lzo's headers, splits
console.log (both kernels wrote ttyS0) into the crashed kernel's part
(console-tail.txt ends with the panic) and the capture kernel's
(capture-console.txt), and copies vmcore-dmesg.txt (makedumpfile
--dump-dmesg). A livepatch scenario's report (scripts/vmcore/
init-klp.sh) names itself (@@SCENARIO), the patch in transition and its
target state (GT target_state=N transition_patch=P) and every patch's state
(GT patch=P enabled=E transition=T); the default one (init.sh) has the
single patch lpstack_lp, target state 1.
"""
import hashlib
import os
import re
import struct
import sys


def read_log(path):
    with open(path, "rb") as f:
        data = f.read().decode("utf-8", "replace")
    return data.replace("\r", "").split("\n")


def section(lines, begin, end):
    out, inside = [], False
    for ln in lines:
        if ln.startswith(begin):
            inside, out = True, []
            continue
        if inside and ln.startswith(end):
            return out
        if inside:
            out.append(ln)
    return out


def parse_gt(lines):
    """GT lines of one pass -> (tasks, transition line, target line, patch lines)."""
    tasks, trans, target, patches = {}, None, None, []
    for ln in lines:
        if ln.startswith("GT tid="):
            kv = dict(re.findall(r"(\w+)=(\S*)", ln))
            tasks[int(kv["tid"])] = (ln, kv)
        elif ln.startswith("GT transition="):
            trans = ln
        elif ln.startswith("GT target_state="):
            target = ln
        elif ln.startswith("GT patch="):
            patches.append(ln)
    return tasks, trans, target, patches


def elf_notes(path):
    """Yield (name, type, desc) of the PT_NOTE segments of an ELF64 core."""
    with open(path, "rb") as f:
        eh = f.read(64)
        assert eh[:4] == b"\x7fELF" and eh[4] == 2, "not ELF64"
        phoff, = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        if phnum == 0xFFFF:  # extended numbering: real count in sh_info of section 0
            shoff, = struct.unpack_from("<Q", eh, 40)
            f.seek(shoff)
            sh0 = f.read(64)
            phnum, = struct.unpack_from("<I", sh0, 44)
        f.seek(phoff)
        phdrs = f.read(phentsize * phnum)
        loads = []
        for i in range(phnum):
            p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align = \
                struct.unpack_from("<IIQQQQQQ", phdrs, i * phentsize)
            if p_type == 1:
                loads.append((p_offset, p_vaddr, p_paddr, p_filesz, p_memsz))
            if p_type != 4:
                continue
            f.seek(p_offset)
            data = f.read(p_filesz)
            off = 0
            while off + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, off)
                off += 12
                name = data[off:off + namesz].rstrip(b"\0").decode("ascii", "replace")
                off += (namesz + 3) & ~3
                desc = data[off:off + descsz]
                off += (descsz + 3) & ~3
                yield ("note", name, ntype, desc)
        yield ("loads", loads)


def reassemble_flat(src, dst):
    """makedumpfile's flattened format -> a plain kdump-compressed file."""
    with open(src, "rb") as f:
        head = f.read(4096)
        if not head.startswith(b"makedumpfile\0"):
            return False
        with open(dst + ".tmp", "wb") as out:
            while True:
                hdr = f.read(16)
                if len(hdr) < 16:
                    raise SystemExit(f"{src}: truncated flattened data")
                offset, size = struct.unpack(">qq", hdr)
                if offset == -1 and size == -1:
                    break
                buf = f.read(size)
                if len(buf) != size:
                    raise SystemExit(f"{src}: truncated flattened record")
                out.seek(offset)
                out.write(buf)
        os.replace(dst + ".tmp", dst)
    return True


def kdump_header(path):
    """A few fields of a (reassembled) kdump-compressed file's headers."""
    with open(path, "rb") as f:
        d = f.read(8192)
    if d[:8] != b"KDUMP   ":
        return f"signature {d[:8]!r}"
    ver, = struct.unpack_from("<i", d, 8)
    uts = [u.decode() for u in d[12:12 + 390].split(b"\0") if u]
    (status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr, _, _, _,
     current_cpu, nr_cpus) = struct.unpack_from("<10I", d, 424)  # after signature, version, utsname, pad, timeval
    sub = d[block_size:block_size + 64]
    phys_base, dump_level, split = struct.unpack_from("<QII", sub, 0)
    off_vmci, size_vmci, off_note, size_note = struct.unpack_from("<4Q", sub, 32)
    return (f"header_version {ver}, utsname {uts}, status {status}, block_size {block_size}, "
            f"bitmap_blocks {bitmap_blocks}, max_mapnr {max_mapnr}, nr_cpus {nr_cpus}, "
            f"current_cpu {current_cpu}; sub-header: phys_base 0x{phys_base:x}, "
            f"dump_level {dump_level}, vmcoreinfo at {off_vmci} size {size_vmci}, "
            f"notes at {off_note} size {size_note}")


def kdump_notes(path):
    """Like elf_notes, from a kdump-compressed file's sub-header (makedumpfile
    copies the PT_NOTE data of /proc/vmcore there), then ("vmcoreinfo", text)
    from offset_vmcoreinfo."""
    with open(path, "rb") as f:
        d = f.read(8192)
        assert d[:8] == b"KDUMP   ", f"{path}: not kdump-compressed"
        block_size, = struct.unpack_from("<I", d, 428)
        f.seek(block_size)
        sub = f.read(64)
        off_vmci, size_vmci, off_note, size_note = struct.unpack_from("<4Q", sub, 32)
        f.seek(off_note)
        data = f.read(size_note)
        f.seek(off_vmci)
        vmci = f.read(size_vmci)
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, off)
        off += 12
        name = data[off:off + namesz].rstrip(b"\0").decode("ascii", "replace")
        off += (namesz + 3) & ~3
        desc = data[off:off + descsz]
        off += (descsz + 3) & ~3
        yield ("note", name, ntype, desc)
    yield ("vmcoreinfo", vmci.rstrip(b"\0").decode("ascii", "replace"))


def split_kernels(con):
    """console.log of a kdump run -> (crashed kernel's lines, capture kernel's lines)."""
    # The first kernel's line starts after the firmware's escape sequences.
    starts = [i for i, l in enumerate(con) if re.search(r"\[\s*0\.000000\] Linux version ", l)]
    if len(starts) < 2:
        return con, []
    return con[:starts[1]], con[starts[1]:]


def panic_trace(con):
    """The panic's lines of a crashed kernel's console: a few lines before
    'Kernel panic - not syncing' (the messages that led to it) up to the end
    of its Call Trace block (the last '</TASK>' or '</IRQ>'/'</NMI>'...)."""
    pi = [i for i, l in enumerate(con) if "Kernel panic - not syncing" in l]
    if not pi:
        return []
    i = pi[-1]
    start = i
    # The lines just before, within 0.1 s: lpstack_irqpanic's pr_emerg,
    # "Uhhuh. NMI received ...", "sysrq: Trigger a crash".
    stamp = lambda l: float(re.match(r"^\[\s*([0-9]+\.[0-9]+)\] ", l).group(1))  # noqa: E731
    t = stamp(con[i])
    while start > 0 and i - start < 6 and re.match(r"^\[\s*[0-9]+\.[0-9]+\] ", con[start - 1]) \
            and t - stamp(con[start - 1]) < 0.1:
        start -= 1
    end = i
    for j in range(i, len(con)):
        if re.search(r"</(TASK|IRQ|NMI|SOFTIRQ)>|^\[\s*[0-9.]+\] (RIP|RSP|R[0-9A-Z]+): ", con[j]):
            end = j
        if re.search(r"Kernel Offset:|---\[ end Kernel panic", con[j]):
            end = j
            break
    return con[start:end + 1]


def write_panic_trace(rundir, fixdir, con):
    """kernel-panic-trace.txt: the panic's lines from the crashed kernel's
    console, or, when the console has no Call Trace of it (a panic in NMI
    context: printk only stores into the ring buffer there, and the kernel
    kexecs before flushing it), from makedumpfile --dump-dmesg's log."""
    trace, src = panic_trace(con), "console.log, ttyS0"
    if not any("Call Trace:" in l for l in trace):
        dm = os.path.join(rundir, "vmcore-dmesg.txt")
        if os.path.exists(dm):
            trace = panic_trace(read_log(dm))
            src = ("vmcore-dmesg.txt, makedumpfile --dump-dmesg of the dump: the console "
                   "shows none of it, printk in NMI context defers the console output and "
                   "the kernel kexecs first")
    if not trace:
        return
    with open(os.path.join(fixdir, "kernel-panic-trace.txt"), "w") as f:
        f.write("# The crashed kernel's own report of the panic (from %s):\n"
                "# from the lines before 'Kernel panic - not syncing' to the end of its\n"
                "# Call Trace. The kernel's own unwind (show_trace_log_lvl, ORC); <IRQ>/<NMI>\n"
                "# ... mark the per-CPU stacks it crossed, '?' entries are unreliable words\n"
                "# it found on the stack. Written by scripts/vmcore/extract.py.\n" % src)
        f.write("\n".join(trace).rstrip("\n") + "\n")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    rundir, fixdir, release = sys.argv[1:4]
    funcs_file = sys.argv[4] if len(sys.argv) > 4 else None
    os.makedirs(fixdir, exist_ok=True)
    rep = read_log(os.path.join(rundir, "report.log"))
    con = read_log(os.path.join(rundir, "console.log"))
    kdump = not os.path.exists(os.path.join(rundir, "vmcore.elf")) and \
        os.path.exists(os.path.join(rundir, "vmcore.kdump-lzo"))
    capture = []
    if kdump:
        con, capture = split_kernels(con)

    uname = next((l.split()[1] for l in rep if l.startswith("@@UNAME ")), None)
    if uname != release:
        raise SystemExit(f"guest uname {uname!r} != {release!r}")
    if "READY-FOR-DUMP" not in rep:
        raise SystemExit("guest never printed READY-FOR-DUMP")

    gt1, tr1, _, _ = parse_gt(section(rep, "@@GT_BEGIN 1", "@@GT_END 1"))
    gt2, tr2, target2, patches2 = parse_gt(section(rep, "@@GT_BEGIN 2", "@@GT_END 2"))
    scenario = next((l.split()[1] for l in rep if l.startswith("@@SCENARIO ")), None)
    tkv = dict(re.findall(r"(\w+)=(\S*)", target2 or ""))
    tpatch = tkv.get("transition_patch", "lpstack_lp")
    target = tkv.get("target_state", "1")
    stalled = dict(re.findall(r"(\w+)=(\S*)", tr2 or "")).get("transition") == "1"
    if not stalled:
        print(f"WARNING: {tpatch} is not in transition at the last GT pass: {tr2}",
              file=sys.stderr)
    dmesg = section(rep, "@@DMESG_BEGIN", "@@DMESG_END")
    busy = next((l.split()[1] for l in rep if l.startswith("@@BUSY_PID ")), "?")
    initpid = next((l.split()[1] for l in rep if l.startswith("@@INIT_PID ")), "?")

    changed = []
    for tid in sorted(set(gt1) | set(gt2)):
        a = gt1.get(tid, (None, {}))[1]
        b = gt2.get(tid, (None, {}))[1]
        if a.get("patch_state") != b.get("patch_state") or not a or not b:
            changed.append(f"#   tid {tid}: pass1 {gt1.get(tid, ('absent',))[0]}"
                           f" | pass2 {gt2.get(tid, ('absent',))[0]}")

    klp_re = re.compile(r"livepatch|klp_|lpstack")
    # Kernel messages: the guest console (ttyS0) carries only kernel output
    # (plus two marker lines) and runs until the VM is stopped, so it also has
    # the retries after /init read dmesg.
    kmsg = [l for l in con if re.match(r"^\[\s*[0-9]+\.[0-9]+\] ", l)]
    if not any("klp_try_switch_task" in l for l in kmsg):
        kmsg = dmesg
    klp = [l for l in kmsg if klp_re.search(l)]
    # klp_try_switch_task() verdicts: one line per task still pending, on
    # every retry (about once a second).
    verdicts = {}  # tid -> dict
    vre = re.compile(r"^\[\s*([0-9.]+)\] livepatch: klp_try_switch_task: (.*):(\d+) "
                     r"(is sleeping on function (\S+)|is running|has an unreliable stack|Unknown.*)$")
    stamps = []
    verdict_lines = kmsg
    if scenario is not None:
        # Several transitions in one boot (lpstack_lp1's came first): the
        # verdicts of the one in transition at the dump start at its last
        # "starting ... transition" line.
        sre = re.compile(r"livepatch: '" + re.escape(tpatch) + r"': starting (un)?patching transition")
        starts = [i for i, l in enumerate(kmsg) if sre.search(l)]
        verdict_lines = kmsg[starts[-1]:] if starts else kmsg
        tstart = verdict_lines[0] if starts else "(no start line found)"
    for l in verdict_lines:
        m = vre.match(l)
        if not m:
            continue
        t, comm, tid = float(m.group(1)), m.group(2), int(m.group(3))
        what = m.group(4)
        verdict = ("sleeping_on=" + m.group(5)) if m.group(5) else what.replace(" ", "_")
        stamps.append(t)
        v = verdicts.setdefault(tid, {"comm": comm, "count": 0, "first": t, "hist": {}})
        v["count"] += 1
        v["last"] = t
        v["verdict"] = verdict
        v["hist"][verdict] = v["hist"].get(verdict, 0) + 1
    last_round = max(stamps) if stamps else 0.0
    counts = {}
    for _, kv in gt2.values():
        counts[kv["patch_state"]] = counts.get(kv["patch_state"], 0) + 1

    out = []
    out.append(f"# lpstack vmcore ground truth, kernel {release}")
    out.append("# Written by scripts/vmcore/make-vmcores.sh from the guest's own report")
    if scenario is None:
        out.append("# (ttyS1) while the livepatch lpstack_lp was in transition.")
    else:
        out.append(f"# (ttyS1) while the livepatch {tpatch} was in transition; scenario {scenario}")
        out.append(f"# (scripts/vmcore/init-klp.sh). Target state of the transition: {target}"
                   f" ({'PATCHED' if target == '1' else 'UNPATCHED' if target == '0' else '?'}).")
        if target == "0":
            out.append("# This is an UNPATCH transition: a task the kernel has switched has")
            out.append("# patch_state 0; patch_state 1 = not switched yet (still runs the patch).")
        else:
            out.append("# A task the kernel has switched has patch_state 1; 0 = not switched yet.")
        out.append("# GT target_state/transition_patch and GT patch= (every patch in")
        out.append("# /sys/kernel/livepatch: enabled, transition) are of pass 2.")
        if not stalled:
            out.append(f"# WARNING: {tpatch} was NOT in transition at pass 2: {tr2}")
    if kdump:
        how = next((l.split(" ", 1)[1] for l in rep if l.startswith("@@PANIC_HOW ")), "sysrq c")
        out.append("# GT lines: pass 2 (the last one before READY-FOR-DUMP; the guest panicked")
        out.append(f"# ({how}) right after and its capture kernel saved /proc/vmcore with")
        out.append("# makedumpfile: no VM stop, the dump is the crashed kernel's memory at the")
        out.append("# panic). patch_state: 0 = unpatched (KLP_TRANSITION_UNPATCHED),")
    else:
        out.append("# GT lines: pass 2 (the last one before READY-FOR-DUMP; the VM was stopped")
        out.append("# and dumped right after). patch_state: 0 = unpatched (KLP_TRANSITION_UNPATCHED),")
    out.append("# 1 = patched, -1 = no transition. stat_state: the state letter of")
    out.append("# /proc/<pid>/task/<tid>/stat. The idle tasks (swapper/N) have no /proc entry.")
    out.append(f"# busy-loop pid: {busy}   init (/init shell) pid: {initpid}")
    out.append(f"# patch_state counts (pass 2): " +
               ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if scenario is not None:
        pending = sorted((tid, kv["comm"]) for tid, (_, kv) in gt2.items()
                         if kv["patch_state"] != target)
        out.append(f"# not switched to the target state (pass 2): {len(pending)}: " +
                   " ".join(f"{c}:{t}" for t, c in pending))
    if changed:
        out.append("# tasks whose patch_state differs between pass 1 and pass 2 "
                   "(or that exist in only one pass):")
        out.extend(changed)
    else:
        out.append("# pass 1 (2 s earlier) has identical patch_state for every task.")
    out.append("")
    if scenario is not None:
        out.append(target2 or "GT target_state=?")
        out.extend(patches2)
    for tid in sorted(gt2):
        out.append(gt2[tid][0])
    out.append(tr2 or "GT transition=?")
    out.append("")
    out.append("# The kernel's own verdicts: klp_try_switch_task() debug lines")
    out.append("# (kernel/livepatch/transition.c, dynamic debug on), one per pending task per")
    out.append("# retry. last = verdict of the task's last line; in_last_round = yes if that")
    out.append("# line belongs to the last retry before the " + ("panic" if kdump else "VM was stopped")
               + " (within 0.5 s of the last")
    out.append(f"# such line, [{last_round:.6f}]); no = the task switched afterwards.")
    if scenario is not None:
        out.append(f"# Only the lines of {tpatch}'s transition, from: {tstart}")
        out.append("# (earlier transitions' lines are in the KMSG section). The function named")
        out.append("# is the klp_func's old_name, also when the code found on the stack is an")
        out.append("# earlier patch's replacement (a stacked patch or an atomic replace's nop)")
        out.append("# or, when unpatching, this patch's own replacement.")
    for tid in sorted(verdicts):
        v = verdicts[tid]
        hist = ",".join(f"{k}:{n}" for k, n in sorted(v["hist"].items()))
        out.append(f"KLP tid={tid} comm={v['comm']} last={v['verdict']} "
                   f"in_last_round={'yes' if last_round - v['last'] < 0.5 else 'no'} "
                   f"lines={v['count']} first=[{v['first']:.6f}] last_at=[{v['last']:.6f}] "
                   f"verdicts={hist}")
    out.append("")
    out.append("# All livepatch-related kernel messages (guest console, ttyS0):")
    out.extend("KMSG " + l for l in klp)
    with open(os.path.join(fixdir, "ground-truth.txt"), "w") as f:
        f.write("\n".join(out) + "\n")

    with open(os.path.join(fixdir, "stacks.txt"), "w") as f:
        f.write("# /proc/<pid>/task/<tid>/stack of every task, read by the guest's /init\n"
                "# after the transition started (kernel's own ORC unwinder, not the\n"
                "# reliable variant; addresses are hidden by the kernel: 0x0).\n")
        f.write("\n".join(section(rep, "@@STACKS_BEGIN", "@@STACKS_END")) + "\n")

    with open(os.path.join(fixdir, "guest-report.txt"), "w") as f:
        f.write("\n".join(l for l in rep) + "\n")

    with open(os.path.join(fixdir, "console-tail.txt"), "w") as f:
        tail = con[-151:] if con and con[-1] == "" else con[-150:]
        if kdump:
            # From 20 lines before the panic marker at the latest: the whole
            # panic output, however long.
            pm = [i for i, l in enumerate(con) if l.startswith("@@PANIC")]
            start = min(max(len(con) - 150, 0), max(pm[-1] - 20, 0)) if pm else max(len(con) - 150, 0)
            tail = con[start:]
        f.write("\n".join(tail).rstrip("\n") + "\n")
    if kdump:
        write_panic_trace(rundir, fixdir, con)
        with open(os.path.join(fixdir, "capture-console.txt"), "w") as f:
            f.write("\n".join(capture).rstrip("\n") + "\n")
        src = os.path.join(rundir, "vmcore-dmesg.txt")
        if os.path.exists(src):
            with open(src, "rb") as a, open(os.path.join(fixdir, "vmcore-dmesg.txt"), "wb") as b:
                b.write(a.read())

    with open(os.path.join(fixdir, "funcs.txt"), "w") as f:
        if funcs_file:
            with open(funcs_file) as src:
                f.write(src.read())
        else:
            f.write("lpstack_park:park_here_a\ncmdline_proc_show\n")

    # VMCOREINFO and CPU notes from the ELF dump.
    info = []
    elf = os.path.join(rundir, "vmcore.elf")
    names = {}
    loads = []
    vmcoreinfo = None
    prstatus, qemu_cpu = [], []
    src_name = "vmcore.elf"
    items = elf_notes(elf)
    if kdump:
        src_name = "vmcore.kdump-lzo"
        items = kdump_notes(os.path.join(rundir, src_name))
    for item in items:
        if item[0] == "loads":
            loads = item[1]
            continue
        if item[0] == "vmcoreinfo":
            # The kdump header's own copy (offset_vmcoreinfo); the VMCOREINFO
            # note, if any, is in the notes too and must be the same.
            if vmcoreinfo is not None and vmcoreinfo != item[1]:
                info.append("WARNING: the kdump header's vmcoreinfo differs from its VMCOREINFO note")
            vmcoreinfo = item[1]
            continue
        _, name, ntype, desc = item
        names[(name, ntype)] = names.get((name, ntype), 0) + 1
        if name == "CORE" and ntype == 1:
            prstatus.append(desc)
        if name == "QEMU":
            qemu_cpu.append(desc)
        if name == "VMCOREINFO":
            vmcoreinfo = desc.rstrip(b"\0").decode("ascii", "replace")
    with open(os.path.join(fixdir, "vmcoreinfo.txt"), "w") as f:
        if vmcoreinfo is None:
            f.write(f"# no VMCOREINFO note in {src_name}\n")
        elif kdump:
            f.write("# The vmcoreinfo of vmcore.kdump-lzo's kdump sub-header (offset_vmcoreinfo,\n"
                    "# copied by makedumpfile from the VMCOREINFO note of the capture kernel's\n"
                    "# /proc/vmcore, which the crashed kernel wrote at the panic), verbatim.\n")
        else:
            f.write("# The VMCOREINFO ELF note of vmcore.elf (the guest's vmcoreinfo, passed to\n"
                    "# QEMU by the qemu_fw_cfg driver through -device vmcoreinfo), verbatim.\n")
        if vmcoreinfo is not None:
            f.write(vmcoreinfo.rstrip("\n") + "\n")
    for idx, desc in enumerate(prstatus):
        regs = struct.unpack_from("<27Q", desc, 112)
        if kdump:
            # crash_notes: pr_pid is the pid of the task the CPU ran; the
            # panicking CPU's registers are crash_setup_regs() in
            # __crash_kexec, the others' the pt_regs of the crash NMI.
            info.append(f"note {idx} NT_PRSTATUS ({src_name}): pr_pid {struct.unpack_from('<I', desc, 32)[0]} "
                        f"rip 0x{regs[16]:x} rsp 0x{regs[19]:x} rbp 0x{regs[4]:x} cs 0x{regs[17]:x} "
                        f"ss 0x{regs[20]:x} eflags 0x{regs[18]:x} gs_base 0x{regs[22]:x}")
            continue
        info.append(f"cpu {idx} NT_PRSTATUS: pr_pid {struct.unpack_from('<I', desc, 32)[0]} "
                    f"rip 0x{regs[16]:x} rsp 0x{regs[19]:x} cs 0x{regs[17]:x} "
                    f"gs_base 0x{regs[22]:x}")
    for idx, desc in enumerate(qemu_cpu):
        version, size = struct.unpack_from("<II", desc, 0)
        rip, = struct.unpack_from("<Q", desc, 136)
        cr = struct.unpack_from("<5Q", desc, 392)
        gs_base, = struct.unpack_from("<Q", desc, 152 + 4 * 24 + 16)
        kgs = struct.unpack_from("<Q", desc, 432)[0] if size >= 440 else None
        info.append(f"cpu {idx} QEMU note v{version}: rip 0x{rip:x} gs.base 0x{gs_base:x} "
                    f"cr0 0x{cr[0]:x} cr3 0x{cr[3]:x} cr4 0x{cr[4]:x} "
                    f"(CR4.LA57={(cr[4] >> 12) & 1})"
                    + (f" kernel_gs_base 0x{kgs:x}" if kgs is not None else ""))
    info.append(f"{'kdump' if kdump else 'elf'} notes: " + ", ".join(f"{n}/type {t} x{c}" for (n, t), c in sorted(names.items())))
    if not kdump:
        info.append(f"elf PT_LOAD segments: {len(loads)}")
    for off, va, pa, fs, ms in loads:
        info.append(f"  PT_LOAD offset 0x{off:x} vaddr 0x{va:x} paddr 0x{pa:x} filesz 0x{fs:x} memsz 0x{ms:x}")
    if vmcoreinfo:
        for key in ("OSRELEASE", "BUILD-ID", "PAGESIZE", "KERNELOFFSET", "NUMBER(phys_base)",
                    "NUMBER(pgtable_l5_enabled)", "SYMBOL(kallsyms_names)",
                    "SYMBOL(init_top_pgt)", "SYMBOL(_stext)", "NUMBER(page_offset_base)",
                    "CRASHTIME"):
            m = re.search(r"^" + re.escape(key) + r"=(.*)$", vmcoreinfo, re.M)
            info.append(f"vmcoreinfo {key}: {m.group(1) if m else '(absent)'}")

    # Reassemble kdump files (QEMU < 8.2 writes makedumpfile's flattened format).
    for fn in sorted(os.listdir(rundir)):
        if fn.startswith("vmcore.kdump-") and not fn.endswith((".reassembled", ".tmp")):
            src = os.path.join(rundir, fn)
            dst = src + ".reassembled"
            if reassemble_flat(src, dst):
                with open(dst, "rb") as f:
                    sig = f.read(8)
                info.append(f"{fn}: makedumpfile flattened format; reassembled into "
                            f"{fn}.reassembled (signature {sig!r})")
                info.append(f"{fn}.reassembled: {kdump_header(dst)}")
            else:
                with open(src, "rb") as f:
                    sig = f.read(8)
                info.append(f"{fn}: not flattened (signature {sig!r})")
                if sig == b"KDUMP   ":
                    info.append(f"{fn}: {kdump_header(src)}")
    for fn in sorted(os.listdir(rundir)):
        if fn.startswith("vmcore."):
            p = os.path.join(rundir, fn)
            info.append(f"{fn}: {os.path.getsize(p)} bytes sha256 {sha256(p)}")
    with open(os.path.join(fixdir, "run-info.txt"), "a") as f:
        f.write("\n".join(info) + "\n")

    print(f"ground truth: {len(gt2)} tasks; transition patch {tpatch}, target state {target}, "
          f"{'stalled' if stalled else 'NOT STALLED'}; patch_state counts {counts}; "
          f"klp verdicts {len(verdicts)}; pass1/pass2 changes {len(changed)}; "
          f"VMCOREINFO {'present' if vmcoreinfo else 'ABSENT'}")


if __name__ == "__main__":
    main()
