#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Read the files the kdump scenario's capture kernel wrote to its raw disk.

usage: kdump-disk.py DISK.img OUTDIR

The layout is written by scripts/vmcore/init-kdump-capture.sh: a 4 KiB
text header at offset 0 ("LPSTACK-KDUMP-DISK 1", one "FILE <name>
offset=<n> size=<n> sha256=<hex> rc=<n> secs=<s>" line per file, "END"),
the files raw at the offsets named. Each file is written to OUTDIR/<name>
and its sha256 checked against the header; one line per file on stdout.
Exit 1 when the header is missing or a file does not match.
"""
import hashlib
import os
import re
import sys


def main():
    disk, outdir = sys.argv[1:3]
    with open(disk, "rb") as f:
        head = f.read(4096).split(b"\0", 1)[0].decode("ascii", "replace")
        lines = head.split("\n")
        if not lines or lines[0] != "LPSTACK-KDUMP-DISK 1":
            raise SystemExit(f"{disk}: no LPSTACK-KDUMP-DISK header (first line {lines[0]!r})")
        if "END" not in lines:
            raise SystemExit(f"{disk}: header has no END line (the capture kernel did not finish)")
        bad = 0
        for ln in lines[1:]:
            if ln == "END":
                break
            m = re.match(r"^FILE (\S+) offset=(\d+) size=(\d+) sha256=([0-9a-f]{64}) rc=(\d+) secs=(\S+)$", ln)
            if not m:
                raise SystemExit(f"{disk}: bad header line {ln!r}")
            name, off, size, sha, rc, secs = m.groups()
            off, size = int(off), int(size)
            if "/" in name or name.startswith("."):
                raise SystemExit(f"{disk}: bad file name {name!r}")
            f.seek(off)
            h = hashlib.sha256()
            dst = os.path.join(outdir, name)
            with open(dst + ".tmp", "wb") as out:
                left = size
                while left:
                    chunk = f.read(min(left, 1 << 20))
                    if not chunk:
                        raise SystemExit(f"{disk}: {name} truncated")
                    out.write(chunk)
                    h.update(chunk)
                    left -= len(chunk)
            ok = h.hexdigest() == sha
            os.replace(dst + ".tmp", dst)
            bad += not ok
            print(f"{name}: {size} bytes at disk offset {off}, sha256 {sha} "
                  f"{'ok' if ok else 'MISMATCH ' + h.hexdigest()}; makedumpfile rc={rc}, {secs} s in the guest")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
