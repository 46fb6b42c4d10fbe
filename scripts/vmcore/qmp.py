#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Stop a QEMU guest and dump its memory in several formats over QMP.

usage: qmp.py SOCKET OUTDIR [--formats elf,kdump-zlib,...] [--no-quit]
       qmp.py SOCKET --inject-nmi

The second form only sends qmp_capabilities and inject-nmi (the kdump-nmi
scenario: QEMU raises an NMI on the guest's CPUs; Linux takes it on CPU 0,
whose LINT1 it leaves unmasked) and prints the replies with a timestamp.

Sends, in order: qmp_capabilities; query-dump-guest-memory-capability;
stop; for each format that QEMU accepts, dump-guest-memory
{"paging": false, "protocol": "file:OUTDIR/vmcore.<fmt>", "detach": true,
 ["format": <fmt>]} and polls query-dump until it reports "completed";
finally quit. Prints one line per step (with timings) to stdout.
"""
import json
import os
import socket
import sys
import time


class QMP:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise SystemExit(f"unexpected greeting: {greeting}")
        self.version = greeting["QMP"]["version"]["qemu"]

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                continue
            return r


def inject_nmi(sock_path):
    q = QMP(sock_path)
    print(f"qemu {q.version['major']}.{q.version['minor']}.{q.version['micro']}")
    r = q.cmd("qmp_capabilities")
    assert "return" in r, r
    st = q.cmd("query-status")
    print(f"query-status: {json.dumps(st.get('return'))}")
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    r = q.cmd("inject-nmi")
    print(f"{t} command {json.dumps({'execute': 'inject-nmi'})}: {json.dumps(r)}")
    if "return" not in r:
        raise SystemExit(1)


def main():
    argv = sys.argv[1:]
    if len(argv) == 2 and argv[1] == "--inject-nmi":
        inject_nmi(argv[0])
        return
    quit_after = "--no-quit" not in argv
    argv = [a for a in argv if a != "--no-quit"]
    formats = ["elf", "kdump-zlib", "kdump-lzo", "kdump-snappy"]
    if "--formats" in argv:
        i = argv.index("--formats")
        formats = argv[i + 1].split(",")
        del argv[i:i + 2]
    if len(argv) != 2:
        raise SystemExit(__doc__)
    sock_path, outdir = argv
    outdir = os.path.abspath(outdir)

    q = QMP(sock_path)
    print(f"qemu {q.version['major']}.{q.version['minor']}.{q.version['micro']}")
    r = q.cmd("qmp_capabilities")
    assert "return" in r, r
    cap = q.cmd("query-dump-guest-memory-capability")
    accepted = cap.get("return", {}).get("formats", [])
    print(f"query-dump-guest-memory-capability: {' '.join(accepted)}")
    r = q.cmd("stop")
    assert "return" in r, r
    print("stop: ok")
    st = q.cmd("query-status")
    print(f"query-status: {json.dumps(st.get('return'))}")

    for fmt in formats:
        if fmt not in accepted:
            print(f"dump {fmt}: skipped (not offered by this QEMU)")
            continue
        path = os.path.join(outdir, f"vmcore.{fmt}")
        if os.path.exists(path):
            os.unlink(path)
        args = {"paging": False, "protocol": f"file:{path}", "detach": True}
        if fmt != "elf":
            args["format"] = fmt
        t0 = time.monotonic()
        r = q.cmd("dump-guest-memory", **args)
        if "error" in r:
            print(f"dump {fmt}: error {r['error']}")
            continue
        while True:
            r = q.cmd("query-dump")
            status = r["return"]["status"]
            if status in ("completed", "failed"):
                break
            time.sleep(0.2)
        dt = time.monotonic() - t0
        size = os.path.getsize(path) if os.path.exists(path) else -1
        print(f"dump {fmt}: {status} in {dt:.1f} s, {size} bytes, "
              f"command {json.dumps({'execute': 'dump-guest-memory', 'arguments': args})}")
        if status != "completed":
            raise SystemExit(1)

    if quit_after:
        q.cmd("quit")
        print("quit: ok")


if __name__ == "__main__":
    main()
