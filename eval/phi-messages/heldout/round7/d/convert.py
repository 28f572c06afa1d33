#!/usr/bin/env python3
"""Parse batch-01..10.txt, check counts and rules, write test7d.jsonl (ids R7D-0001...)."""
import json, os, re, sys, glob, collections

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement", "clinic_name",
         "medication", "mental_health", "pregnancy", "admin", "lookalike"]
WANT = {k: 20 for k in KINDS}
WANT["lookalike"] = 30
MIN = {k: (10, 6) for k in KINDS}
MIN["lookalike"] = (12, 12)
HDR = re.compile(r"^### (\S+) ([01]) ([01]) ([01])\s*$")

def parse(path):
    blocks, cur = [], None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if line.startswith("### "):
            m = HDR.match(line)
            if not m:
                raise SystemExit(f"{path}:{n}: bad header: {line!r}")
            if cur: blocks.append(cur)
            cur = {"file": os.path.basename(path), "line": n, "kind": m.group(1), "hold": m.group(2) == "1",
                   "part2": m.group(3) == "1", "hard": m.group(4) == "1", "subject": None, "why": None, "body": []}
        elif cur is None:
            if line.strip():
                raise SystemExit(f"{path}:{n}: text before first header")
        elif cur["subject"] is None and line.startswith("S: "):
            cur["subject"] = line[3:].strip()
        elif cur["why"] is None and cur["subject"] is not None and line.startswith("W: "):
            cur["why"] = line[3:].strip()
        else:
            cur["body"].append(line)
    if cur: blocks.append(cur)
    return blocks

def main():
    files = sorted(glob.glob(os.path.join(HERE, "batch-*.txt")))
    partial = len(files) != 10
    errs, recs, seen = [], [], {}
    for p in files:
        bl = parse(p)
        if len(bl) != 25:
            errs.append(f"{os.path.basename(p)}: {len(bl)} blocks, want 25")
        recs.extend(bl)
    for b in recs:
        where = f"{b['file']}:{b['line']}"
        if b["kind"] not in KINDS: errs.append(f"{where}: unknown kind {b['kind']}")
        if not b["subject"]: errs.append(f"{where}: no subject")
        if not b["why"]: errs.append(f"{where}: no why"); continue
        m = re.match(r"^(H[123]|P[1-6])\b", b["why"])
        if not m: errs.append(f"{where}: why does not start with a rule id"); continue
        rule = m.group(1)
        if b["hold"] != rule.startswith("H"): errs.append(f"{where}: hold={b['hold']} but why cites {rule}")
        if b["part2"] != (rule == "H3"): errs.append(f"{where}: part2={b['part2']} but why cites {rule}")
        if b["part2"] and not b["hold"]: errs.append(f"{where}: part2 without hold")
        text = "\n".join(b["body"]).strip("\n")
        b["text"] = text
        if not text.strip(): errs.append(f"{where}: empty body")
        key = re.sub(r"\s+", " ", text.strip().lower())
        if key in seen: errs.append(f"{where}: duplicate text of {seen[key]}")
        seen[key] = where
    c = collections.OrderedDict((k, collections.Counter()) for k in KINDS)
    for b in recs:
        if b["kind"] not in c: continue
        cc = c[b["kind"]]
        cc["n"] += 1; cc["hold" if b["hold"] else "pass"] += 1
        cc["part2"] += b["part2"]; cc["hard"] += b["hard"]
    if not partial:
        for k in KINDS:
            if c[k]["n"] != WANT[k]: errs.append(f"kind {k}: {c[k]['n']} lines, want {WANT[k]}")
            if c[k]["hold"] < MIN[k][0]: errs.append(f"kind {k}: {c[k]['hold']} holds, want >= {MIN[k][0]}")
            if c[k]["pass"] < MIN[k][1]: errs.append(f"kind {k}: {c[k]['pass']} passes, want >= {MIN[k][1]}")
    tot = collections.Counter()
    print("| kind | lines | hold | pass | part2 | hard |")
    print("|---|---|---|---|---|---|")
    for k in KINDS:
        print(f"| `{k}` | {c[k]['n']} | {c[k]['hold']} | {c[k]['pass']} | {c[k]['part2']} | {c[k]['hard']} |")
        tot.update(c[k])
    n = tot["n"] or 1
    print(f"| **all** | **{tot['n']}** | **{tot['hold']}** ({100*tot['hold']/n:.0f}%) | **{tot['pass']}** | "
          f"**{tot['part2']}** | **{tot['hard']}** ({100*tot['hard']/n:.0f}%) |")
    if errs:
        print("\nERRORS:"); [print("  " + e) for e in errs]; sys.exit(1)
    if partial:
        print(f"\npartial check: {len(files)} batch files, counts not enforced, nothing written"); return
    out = os.path.join(HERE, "test7d.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for i, b in enumerate(recs, 1):
            f.write(json.dumps({"id": f"R7D-{i:04d}", "kind": b["kind"], "hold": b["hold"], "part2": b["part2"],
                                "hard": b["hard"], "subject": b["subject"], "text": b["text"], "why": b["why"]},
                               ensure_ascii=False) + "\n")
    print(f"\nwrote {out} ({len(recs)} lines)")

if __name__ == "__main__":
    main()
