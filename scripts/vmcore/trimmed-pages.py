#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Does a trimmed dump hold the stack pages of the running tasks' traces?
And, with --write OUT, a copy of it that does.

usage: scripts/vmcore/trimmed-pages.py FULL_DUMP TRIMMED_DUMP VMLINUX [MODULE.ko...] [--write OUT]

drgn unwinds every task on a CPU in FULL_DUMP (makedumpfile's output); for
every stack area a trace crosses (task, hardirq, exception/NMI stack)
every page from the lowest frame sp on it up to the area's top (where the
pt_regs or the link to the previous stack lie) is translated to a physical
page (the kernel's page tables, drgn's follow_phys) and looked up in
TRIMMED_DUMP's kdump bitmap (the pages it holds). drgn does not open
lpstack trim's output itself (libkdumpfile: "KDUMP_ATTR_ARCH_NAME: Key has
no value"), hence this check. Prints one line per stack area and a last
line "ALL PRESENT" or "MISSING n pages".

--write OUT: writes TRIMMED_DUMP plus, from FULL_DUMP, every page of each
online CPU's running task's whole task stack, hardirq stack and NMI
exception stack (those FULL_DUMP holds; makedumpfile -d 31 leaves out zero
pages), then checks OUT as above. A kdump-compressed file is rebuilt: the
same header, sub-header (VMCOREINFO, notes) and bitmap size, the new pages'
bits set in both bitmaps, one page descriptor per dumped page in pfn order,
each page's data copied as it was stored (its descriptor's flags say how it
is compressed: the trimmed pages zlib as lpstack trim wrote them, the added
ones as makedumpfile did).
"""
import struct
import sys

import drgn
from drgn.helpers.linux.cpumask import for_each_online_cpu
from drgn.helpers.linux.mm import follow_phys
from drgn.helpers.linux.sched import cpu_curr

from importlib.machinery import SourceFileLoader  # noqa: E402

ks = SourceFileLoader("kdump_stacks", __file__.rsplit("/", 3)[0] + "/scripts/drgn/kdump-stacks.py").load_module()


HDR_OFF = 8 + 4 + 390 + 6 + 16  # disk_dump_header.status (timestamp aligned to 8 at 408)


class Kdump:
    """A kdump-compressed file: header fields, bitmaps, page descriptors."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.hdr = f.read(4096)
            assert self.hdr[:8] == b"KDUMP   ", path
            (self.status, self.block_size, self.sub_hdr_size, self.bitmap_blocks,
             self.max_mapnr) = struct.unpack_from("<IiiII", self.hdr, HDR_OFF)
            f.seek(0)
            self.head = f.read((1 + self.sub_hdr_size) * self.block_size)
            self.bitmap = bytearray(f.read(self.bitmap_blocks * self.block_size))
            self.desc_off = (1 + self.sub_hdr_size + self.bitmap_blocks) * self.block_size
            half = len(self.bitmap) // 2
            self.bm1, self.bm2 = self.bitmap[:half], self.bitmap[half:]
            self.pfns = [pfn for pfn in range(len(self.bm2) * 8) if self.bm2[pfn // 8] >> (pfn % 8) & 1]
            f.seek(self.desc_off)
            raw = f.read(24 * len(self.pfns))
        self.desc = {pfn: struct.unpack_from("<qIIQ", raw, 24 * i) for i, pfn in enumerate(self.pfns)}

    def has(self, pfn):
        return pfn in self.desc

    def page_data(self, pfn):
        off, size, flags, pflags = self.desc[pfn]
        with open(self.path, "rb") as f:
            f.seek(off)
            return f.read(size), flags, pflags


def write_with(trimmed, full, add, out):
    """TRIMMED plus the pages ADD (pfns) taken from FULL, into OUT."""
    pfns = sorted(set(trimmed.pfns) | {p for p in add if full.has(p)})
    added = len(pfns) - len(trimmed.pfns)
    bm = bytearray(trimmed.bitmap)
    half = len(bm) // 2
    for pfn in pfns:
        bm[pfn // 8] |= 1 << (pfn % 8)
        bm[half + pfn // 8] |= 1 << (pfn % 8)
    head = bytearray(trimmed.head)
    # total_ram_blocks (after max_mapnr): lpstack trim counts the pages it kept.
    (trb,) = struct.unpack_from("<I", head, HDR_OFF + 20)
    struct.pack_into("<I", head, HDR_OFF + 20, trb + added)
    data_off = trimmed.desc_off + 24 * len(pfns)
    descs, datas = bytearray(), []
    for pfn in pfns:
        src = trimmed if trimmed.has(pfn) else full
        d, flags, pflags = src.page_data(pfn)
        descs += struct.pack("<qIIQ", data_off, len(d), flags, pflags)
        datas.append(d)
        data_off += len(d)
    with open(out, "wb") as f:
        f.write(head)
        f.write(bm)
        f.write(descs)
        for d in datas:
            f.write(d)
    return added


def main():
    argv = sys.argv[1:]
    out = None
    if "--write" in argv:
        i = argv.index("--write")
        out = argv[i + 1]
        del argv[i:i + 2]
    full, trimmed, vmlinux = argv[:3]
    prog = drgn.Program()
    prog.set_core_dump(full)
    prog.load_debug_info([vmlinux], default=False, main=True)
    if argv[3:]:
        prog.load_debug_info(argv[3:], default=False)
    mm = prog["init_mm"].address_of_()
    phys = lambda va: follow_phys(mm, va).value_()  # noqa: E731
    tk = Kdump(trimmed)
    if out:
        fk = Kdump(full)
        add = set()
        for cpu in for_each_online_cpu(prog):
            t = cpu_curr(prog, cpu)
            for name, lo, hi in ks.stack_areas(prog, cpu, t):
                if name.startswith("task stack") or name in ("hardirq stack", "exception stack NMI"):
                    for va in range(lo & ~0xFFF, hi, 4096):
                        add.add(phys(va) >> 12)
        n = write_with(tk, fk, add, out)
        print("wrote %s: %d pages of %s plus %d stack pages of %s (%d of the %d stack pages asked for; "
              "the others are not in it: zero pages)" % (
                  out, len(tk.pfns), trimmed.rsplit("/", 1)[-1], n, full.rsplit("/", 1)[-1],
                  len([p for p in add if fk.has(p)]), len(add)))
        tk = Kdump(out)
    missing = 0
    for cpu in for_each_online_cpu(prog):
        t = cpu_curr(prog, cpu)
        areas = ks.stack_areas(prog, cpu, t)
        lowest = {}
        for fr in prog.stack_trace(t):
            try:
                sp = fr.sp
            except (LookupError, ValueError):
                continue
            for name, lo, hi in areas:
                if lo <= sp < hi:
                    lowest[name] = min(lowest.get(name, hi), sp)
                    break
        for name, lo, hi in areas:
            if name not in lowest:
                continue
            va = lowest[name] & ~0xFFF
            n_ok = n = 0
            while va < hi:
                pa = phys(va)
                n += 1
                if tk.has(pa >> 12):
                    n_ok += 1
                else:
                    missing += 1
                    print("  MISSING: CPU %d %s page 0x%x (phys 0x%x)" % (cpu, name, va, pa))
                va += 4096
            print("CPU %d pid %d %s: %s 0x%x-0x%x (from the lowest frame sp 0x%x to its top): %d of %d pages in %s" % (
                cpu, t.pid.value_(), t.comm.string_().decode(), name, lowest[name] & ~0xFFF, hi,
                lowest[name], n_ok, n, (out or trimmed).rsplit("/", 1)[-1]))
    print("ALL PRESENT" if not missing else "MISSING %d pages" % missing)


if __name__ == "__main__":
    main()
