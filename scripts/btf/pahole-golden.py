#!/usr/bin/env python3
"""Record pahole's view of struct layouts as a golden file for tests/btf.rs.

Usage: pahole-golden.py SPEC BTF [BASE_BTF] > golden.txt

SPEC lines (blank lines and '#' comments ignored):
    sizeof STRUCT            -> "sizeof STRUCT SIZE"
    member STRUCT PATH       -> "member STRUCT PATH OFFSET BIT BITS SIZE"
    members STRUCT           -> one "member" line per member pahole prints,
                                anonymous struct/union members included
    enum ENUM                -> "enum ENUM NAME VALUE" per enumerator
Anything not found prints "absent STRUCT [PATH]".

PATH is dot-separated; each step but the last must be of type
"struct X" / "union X" in pahole's output (the next step is looked up in
X). OFFSET is the byte offset pahole prints (for a bitfield: of its storage
unit), BIT the bit within that unit, BITS the bitfield width (0 if none),
SIZE pahole's size column.

pahole prints the members of anonymous structs/unions inline with offsets
from the start of the outermost struct, which is what lpstack's
Btf::member() returns as well.
"""
import re
import subprocess
import sys

# "<type> <name>[dims][:bits] [__attribute__(...)]; /* off[:bit] size */"
MEMBER = re.compile(
    r"^\s*(?P<type>.*?)\s*(?:\(\*(?P<fname>\w+)\)\(.*\)|(?P<name>\w+)(?P<dims>(?:\[\d*\])*)(?::(?P<bits>\d+))?)"
    r"(?:\s+__attribute__\(\(.*\)\))?;\s*/\*\s*(?P<off>\d+)(?::\s*(?P<bit>\d+))?\s+(?P<size>\d+)\s*\*/"
)
SIZE = re.compile(r"/\* size: (\d+),")
ENUMERATOR = re.compile(r"^\s*(\w+)\s*=\s*(-?\d+),?\s*$")

_cache = {}


def pahole(btf, base, name):
    key = (btf, base, name)
    if key not in _cache:
        cmd = ["pahole", "-F", "btf"]
        if base:
            cmd += ["--btf_base", base]
        cmd += ["-C", name, btf]
        out = subprocess.run(cmd, capture_output=True, text=True)
        text = out.stdout
        # pahole prints the type (and exits 0) or complains on stderr.
        _cache[key] = text if text.strip() else None
    return _cache[key]


def members(text):
    """(name, type, off, bit, bits, size) for each member line, in order."""
    out = []
    for line in text.splitlines()[1:]:
        m = MEMBER.match(line)
        if not m:
            continue
        name = m.group("name") or m.group("fname")
        typ = m.group("type")
        if m.group("dims"):
            typ += " " + m.group("dims")
        bits = int(m.group("bits") or 0)
        out.append((name, typ, int(m.group("off")), int(m.group("bit") or 0), bits, int(m.group("size"))))
    return out


def find(btf, base, struct, path):
    """(off, bit, bits, size) of PATH in STRUCT, or None."""
    total = 0
    cur = struct
    steps = path.split(".")
    for i, step in enumerate(steps):
        text = pahole(btf, base, cur)
        if text is None:
            return None
        hit = [m for m in members(text) if m[0] == step]
        if not hit:
            return None
        name, typ, off, bit, bits, size = hit[0]
        total += off
        if i + 1 < len(steps):
            t = re.match(r"^(?:const\s+|volatile\s+)*(?:struct|union)\s+(\w+)$", typ.strip())
            if not t:
                sys.exit(f"{struct}.{path}: cannot descend into '{typ}'")
            cur = t.group(1)
    return total, bit, bits, size


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    spec, btf = sys.argv[1], sys.argv[2]
    base = sys.argv[3] if len(sys.argv) == 4 else None
    ver = subprocess.run(["pahole", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# pahole {ver}: pahole -F btf{' --btf_base BASE' if base else ''} -C <type> BTF")
    for raw in open(spec):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        what = line[0]
        if what == "sizeof":
            text = pahole(btf, base, line[1])
            m = SIZE.search(text or "")
            print(f"sizeof {line[1]} {m.group(1)}" if m else f"absent {line[1]}")
        elif what == "member":
            r = find(btf, base, line[1], line[2])
            print(f"member {line[1]} {line[2]} {r[0]} {r[1]} {r[2]} {r[3]}" if r else f"absent {line[1]} {line[2]}")
        elif what == "members":
            text = pahole(btf, base, line[1])
            if text is None:
                print(f"absent {line[1]}")
                continue
            for name, _typ, off, bit, bits, size in members(text):
                print(f"member {line[1]} {name} {off} {bit} {bits} {size}")
        elif what == "enum":
            text = pahole(btf, base, line[1])
            if text is None or not text.lstrip().startswith("enum"):
                print(f"absent {line[1]}")
                continue
            for l in text.splitlines()[1:]:
                m = ENUMERATOR.match(l)
                if m:
                    print(f"enum {line[1]} {m.group(1)} {m.group(2)}")
        else:
            sys.exit(f"bad spec line: {raw!r}")


if __name__ == "__main__":
    main()
