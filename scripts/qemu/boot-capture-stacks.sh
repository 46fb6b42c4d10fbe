#!/usr/bin/env bash
# Boot a Debian kernel under QEMU (TCG) with a busybox initramfs, dump
# /proc/<pid>/task/<tid>/stack of every task, and convert the
# "func+0xoff/0xsize" frames into absolute addresses with System.map
# (the guest boots with nokaslr, so System.map addresses are the real ones).
#
# usage: scripts/qemu/boot-capture-stacks.sh [612|61]...   (default: 612 61)
#
# Writes tests/fixtures/stacks/stacks-<version>.txt:
#   task <tid> <comm>
#   <hex_addr> <symbol>+0x<off>/0x<size>
#   ...
# The full guest console log stays in tests/fixtures/work/qemu/.
#
# Needs qemu-system-x86, busybox-static, cpio (installed with apt-get if
# missing), python3, and the committed tests/fixtures/orc/System.map-*.gz.
# The kernel image .deb is downloaded into tests/fixtures/work/ (ignored)
# unless tests/fixtures/build-orc-fixtures.sh already put it there.
#
# Env overrides: K612_IMAGE_PKG K612_VERSION K612_RELEASE K612_NAME,
#   K61_IMAGE_PKG K61_VERSION K61_RELEASE K61_NAME, QEMU_TIMEOUT (120),
#   QEMU_ACCEL (tcg).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${WORK:-$ROOT/tests/fixtures/work}"
OUT="${OUT:-$ROOT/tests/fixtures/stacks}"
MAPS="$ROOT/tests/fixtures/orc"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-120}"
QEMU_ACCEL="${QEMU_ACCEL:-tcg}"

K612_IMAGE_PKG="${K612_IMAGE_PKG:-linux-image-6.12.117+deb12-amd64-unsigned}"
K612_VERSION="${K612_VERSION:-6.12.117-1~deb12u1}"
K612_RELEASE="${K612_RELEASE:-6.12.117+deb12-amd64}"
K612_NAME="${K612_NAME:-6.12.117}"
K61_IMAGE_PKG="${K61_IMAGE_PKG:-linux-image-6.1.0-57-amd64-unsigned}"
K61_VERSION="${K61_VERSION:-6.1.192-3}"
K61_RELEASE="${K61_RELEASE:-6.1.0-57-amd64}"
K61_NAME="${K61_NAME:-6.1.192}"

log() { printf '>>> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_tools() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
        || missing+=(busybox-static)
    command -v cpio >/dev/null || missing+=(cpio)
    command -v python3 >/dev/null || missing+=(python3)
    command -v file >/dev/null || missing+=(file)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

# The guest's /init (busybox sh).
write_init() {
    cat >"$1" <<'EOF'
#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /tmp && mount -t tmpfs tmp /tmp

# A few blocked (not busy) tasks:
sleep 1000 &                          # nanosleep
sleep 1000 | cat &                    # cat blocked reading a pipe
sh -c 'sleep 1000; echo done' &       # sh blocked in wait4
mkfifo /tmp/fifo
cat /tmp/fifo &                       # blocked opening a FIFO (no writer)
sleep 2

echo "@@UNAME $(uname -r)"
echo "@@BEGIN"
for t in /proc/[0-9]*/task/[0-9]*; do
    [ -r "$t/stack" ] || continue
    tid="${t##*/}"
    pid="${t#/proc/}"; pid="${pid%%/*}"
    echo "@@TASK $pid $tid $(cat "$t/comm" 2>/dev/null)"
    cat "$t/stack" 2>/dev/null
done
echo "@@END"
poweroff -f
EOF
    chmod +x "$1"
}

build_initramfs() {  # OUT_CPIO_GZ
    local dir="$WORK/qemu/initramfs"
    rm -rf "$dir"
    mkdir -p "$dir"/{bin,proc,sys,dev,tmp}
    cp /bin/busybox "$dir/bin/busybox"
    ln -s busybox "$dir/bin/sh"
    write_init "$dir/init"
    (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 -n >"$1"
}

get_vmlinuz() {  # PKG VERSION RELEASE -> prints path
    local pkg="$1" version="$2" release="$3"
    local found
    found="$(ls "$WORK"/k*/image/boot/vmlinuz-"$release" 2>/dev/null | head -n1 || true)"
    if [ -n "$found" ]; then
        echo "$found"
        return
    fi
    local debs="$WORK/debs" dir="$WORK/qemu/image-$release"
    local deb="$debs/${pkg}_${version//:/%3a}_amd64.deb"
    mkdir -p "$debs"
    if [ ! -s "$deb" ]; then
        log "apt-get download $pkg=$version"
        (cd "$debs" && apt-get download "$pkg=$version") >&2
    fi
    if [ ! -s "$dir/boot/vmlinuz-$release" ]; then
        rm -rf "$dir" && mkdir -p "$dir"
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" "./boot/vmlinuz-$release"
    fi
    echo "$dir/boot/vmlinuz-$release"
}

# convert CONSOLE_LOG SYSTEM_MAP_GZ RELEASE OUT_TXT
convert() {
    python3 - "$@" <<'EOF'
import bisect, gzip, re, sys

log_path, map_path, release, out_path = sys.argv[1:5]
syms = []  # (addr, name)
for line in gzip.open(map_path, "rt"):
    a, t, n = line.split()[:3]
    syms.append((int(a, 16), t, n))
syms.sort()
addrs = [a for a, _, _ in syms]
by_name = {}
for i, (a, t, n) in enumerate(syms):
    by_name.setdefault(n, []).append(i)

def resolve(name, off, size):
    cands = by_name.get(name)
    if not cands:
        return None, "no such symbol"
    text = [i for i in cands if syms[i][1] in "tTwW"] or cands
    if len(text) == 1:
        return syms[text[0]][0] + off, None
    # Several (static) symbols share the name: keep those whose distance to
    # the next different address equals the size kallsyms printed.
    ok = []
    for i in text:
        a = syms[i][0]
        j = bisect.bisect_right(addrs, a)
        nxt = addrs[j] if j < len(addrs) else None
        if nxt is not None and nxt - a == size:
            ok.append(a)
    if len(set(ok)) == 1:
        return ok[0] + off, None
    return None, f"ambiguous ({len(text)} candidates)"

frame_re = re.compile(r"^\[<[0-9a-f]+>\] ([^+\s]+)\+0x([0-9a-f]+)/0x([0-9a-f]+)(?: \[(\S+)\])?$")
text = open(log_path, errors="replace").read().replace("\r", "")
uname = re.search(r"@@UNAME (\S+)$", text, re.M)
if not uname or uname.group(1) != release:
    sys.exit(f"guest uname {uname.group(1) if uname else None!r} != {release}")
body = text.split("@@BEGIN\n", 1)[1].split("@@END", 1)[0]
out, problems, ntasks, nframes = [], [], 0, 0
for line in body.splitlines():
    if line.startswith("@@TASK "):
        _, pid, tid, *comm = line.split(" ")
        out.append(f"task {tid} {' '.join(comm)}")
        ntasks += 1
        continue
    m = frame_re.match(line.strip())
    if not m:
        if line.strip():
            problems.append(f"unparsed: {line!r}")
        continue
    name, off, size, mod = m.group(1), int(m.group(2), 16), int(m.group(3), 16), m.group(4)
    if mod:
        problems.append(f"module frame skipped: {line!r}")
        continue
    addr, why = resolve(name, off, size)
    if addr is None:
        problems.append(f"{name}: {why}")
        out.append(f"? {name}+0x{off:x}/0x{size:x}")
    else:
        out.append(f"{addr:x} {name}+0x{off:x}/0x{size:x}")
    nframes += 1
open(out_path, "w").write("\n".join(out) + "\n")
print(f"{ntasks} tasks, {nframes} frames, {len(problems)} problems", file=sys.stderr)
for p in problems:
    print("  " + p, file=sys.stderr)
EOF
}

run_one() {
    local tag="$1" pkg version release name
    eval "pkg=\$K${tag}_IMAGE_PKG version=\$K${tag}_VERSION release=\$K${tag}_RELEASE name=\$K${tag}_NAME"
    local sysmap="$MAPS/System.map-$release.gz"
    [ -s "$sysmap" ] || die "missing $sysmap (run tests/fixtures/build-orc-fixtures.sh)"
    local vmlinuz
    vmlinuz="$(get_vmlinuz "$pkg" "$version" "$release")"
    mkdir -p "$WORK/qemu" "$OUT"
    local initrd="$WORK/qemu/initramfs.cpio.gz"
    build_initramfs "$initrd"
    local console="$WORK/qemu/console-$release.log"
    log "booting $release (timeout ${QEMU_TIMEOUT}s)"
    local rc=0
    timeout "$QEMU_TIMEOUT" qemu-system-x86_64 -accel "$QEMU_ACCEL" -cpu max -m 1024 \
        -nographic -no-reboot -kernel "$vmlinuz" -initrd "$initrd" \
        -append "console=ttyS0 nokaslr panic=-1 quiet" </dev/null >"$console" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || log "qemu exited with $rc"
    grep -q '^@@END' <(tr -d '\r' <"$console") || die "no @@END in $console"
    convert "$console" "$sysmap" "$release" "$OUT/stacks-$name.txt"
    log "guest console tail (without the dump):"
    tr -d '\r' <"$console" | sed -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' \
        | grep -v -e '^@@' -e '^\[<' -e '^[[:space:]]*$' | tail -n 15 >&2
    log "wrote $OUT/stacks-$name.txt ($(grep -c '^task ' "$OUT/stacks-$name.txt") tasks)"
}

main() {
    need_tools
    local k
    for k in "${@:-612 61}"; do
        for kk in $k; do run_one "$kk"; done
    done
}

main "$@"
