#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
# The klp fixtures checked three ways (patched set from the dump's memory,
# funcs.txt, the transition patch's .ko) against the kernel's own verdicts;
# prints a markdown table. Run from the repo root after cargo build --release.
import json, subprocess, sys, re
runs = ["6.12.117+deb12-amd64-stacked:lpstack_lp2","6.12.117+deb12-amd64-replace:lpstack_lp3","6.12.117+deb12-amd64-unpatch:lpstack_lp1",
        "6.12.117+deb12-amd64-kthread:lpstack_lp_kthread","6.1.0-57-amd64-stacked:lpstack_lp2","6.1.0-57-amd64-replace:lpstack_lp3","6.1.0-57-amd64-unpatch:lpstack_lp1",
        "6.12.117+deb12-amd64:lpstack_lp","6.12.117+deb12-amd64-la57:lpstack_lp","6.1.0-57-amd64:lpstack_lp"]
def run(args):
    p = subprocess.run(["./target/release/lpstack","check"]+args+["--format","json"],capture_output=True,text=True)
    if p.returncode == 2: return None, p.stderr.strip().splitlines()[-1]
    d = json.loads(p.stdout)
    return {t["pid"]:(t["verdict"], (t["blocking"] or {}).get("function")) for t in d["tasks"]}, d
print("| run | tasks | kernel: held back | memory | funcs.txt | .ko | agree |")
print("|---|---|---|---|---|---|---|")
for r in runs:
    d, m = r.split(":")
    base = f"tests/fixtures/vmcore/{d}"
    gt = open(f"{base}/ground-truth.txt").read()
    held = set(re.findall(r"^KLP tid=(\d+) .*last=sleeping_on=\S+ in_last_round=yes", gt, re.M))
    res = {}
    for name, extra in [("memory",[]),("funcs.txt",["--set",f"{base}/funcs.txt"]),(".ko",["--patch",f"{base}/{m}.ko"])]:
        v, d2 = run([f"{base}/vmcore.trimmed.kdump"]+extra)
        res[name] = (v, d2)
    def blocked(v): return None if v is None else {str(p) for p,(x,_) in v.items() if x=="blocked"}
    cells = []
    for name in ["memory","funcs.txt",".ko"]:
        v,_ = res[name]
        cells.append("exit 2 (no state)" if v is None else f"{len(blocked(v))} blocked, {'=' if blocked(v)==held else '≠'} kernel")
    vs = [res[n][0] for n in ["memory","funcs.txt",".ko"] if res[n][0] is not None]
    agree = all(v == vs[0] for v in vs)
    ntasks = len(vs[0]) if vs else "?"
    print(f"| {d} | {ntasks} | {len(held)} | " + " | ".join(cells) + f" | {'all tasks' if agree else 'NO'} ({len(vs)} sources) |")
