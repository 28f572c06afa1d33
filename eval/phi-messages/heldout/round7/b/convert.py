#!/usr/bin/env python3
"""Parse batch-01.txt .. batch-10.txt, check counts and labelling rules, write test7b.jsonl."""
import json, os, re, sys, hashlib

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement", "clinic_name",
         "medication", "mental_health", "pregnancy", "admin", "lookalike"]
WANT = {k: 20 for k in KINDS}
WANT["lookalike"] = 30
MIN_HOLD = {k: 10 for k in KINDS}; MIN_HOLD["lookalike"] = 12
MIN_PASS = {k: 6 for k in KINDS}; MIN_PASS["lookalike"] = 12
HDR = re.compile(r"^### (\S+) ([01]) ([01]) ([01])\s*$")
WHY = re.compile(r"^(H1|H2|H3|P1|P2|P3|P4|P5|P6)\b")

def parse(path):
    blocks, cur = [], None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            m = HDR.match(line)
            if line.startswith("### "):
                if not m:
                    sys.exit(f"{path}:{n}: bad header: {line!r}")
                if cur: blocks.append(cur)
                cur = {"file": os.path.basename(path), "line": n, "kind": m.group(1),
                       "hold": m.group(2) == "1", "part2": m.group(3) == "1", "hard": m.group(4) == "1",
                       "subject": None, "why": None, "body": []}
                continue
            if cur is None:
                if line.strip():
                    sys.exit(f"{path}:{n}: text before first header")
                continue
            if cur["subject"] is None and line.startswith("S: "):
                cur["subject"] = line[3:].strip(); continue
            if cur["why"] is None and cur["subject"] is not None and line.startswith("W: "):
                cur["why"] = line[3:].strip(); continue
            cur["body"].append(line)
    if cur: blocks.append(cur)
    return blocks

def main():
    files = [os.path.join(HERE, f"batch-{i:02d}.txt") for i in range(1, 11)]
    present = [f for f in files if os.path.exists(f)]
    complete = len(present) == 10
    errs, blocks = [], []
    for f in present:
        b = parse(f)
        if len(b) != 25:
            errs.append(f"{os.path.basename(f)}: {len(b)} blocks, want 25")
        blocks.extend(b)
    seen = {}
    for b in blocks:
        where = f"{b['file']}:{b['line']}"
        if b["kind"] not in KINDS: errs.append(f"{where}: unknown kind {b['kind']}")
        if not b["subject"]: errs.append(f"{where}: missing S:")
        if not b["why"]: errs.append(f"{where}: missing W:"); continue
        while b["body"] and not b["body"][0].strip(): b["body"].pop(0)
        while b["body"] and not b["body"][-1].strip(): b["body"].pop()
        b["text"] = "\n".join(b["body"])
        if not b["text"].strip(): errs.append(f"{where}: empty body")
        m = WHY.match(b["why"])
        if not m: errs.append(f"{where}: why does not start with a rule id"); continue
        rule = m.group(1)
        if b["hold"] and not rule.startswith("H"): errs.append(f"{where}: hold but why cites {rule}")
        if not b["hold"] and not rule.startswith("P"): errs.append(f"{where}: pass but why cites {rule}")
        if b["part2"] and not (b["hold"] and rule == "H3"): errs.append(f"{where}: part2 must be a hold citing H3")
        if rule == "H3" and not b["part2"]: errs.append(f"{where}: H3 without part2")
        key = re.sub(r"\s+", " ", b["text"].strip().lower())
        if key in seen: errs.append(f"{where}: duplicate text of {seen[key]}")
        seen[key] = where
        skey = b["subject"].strip().lower()
    # per-kind table
    rows = []
    tot = {"n": 0, "hold": 0, "pass": 0, "part2": 0, "hard": 0}
    for k in KINDS:
        kb = [b for b in blocks if b["kind"] == k]
        h = sum(b["hold"] for b in kb); p = len(kb) - h
        r = {"n": len(kb), "hold": h, "pass": p, "part2": sum(b["part2"] for b in kb), "hard": sum(b["hard"] for b in kb)}
        rows.append((k, r))
        for x in tot: tot[x] += r[x]
        if complete:
            if len(kb) != WANT[k]: errs.append(f"kind {k}: {len(kb)} blocks, want {WANT[k]}")
            if h < MIN_HOLD[k]: errs.append(f"kind {k}: {h} holds, want >= {MIN_HOLD[k]}")
            if p < MIN_PASS[k]: errs.append(f"kind {k}: {p} passes, want >= {MIN_PASS[k]}")
    print("| kind | lines | hold | pass | part2 | hard |")
    print("|---|---|---|---|---|---|")
    for k, r in rows:
        print(f"| `{k}` | {r['n']} | {r['hold']} | {r['pass']} | {r['part2']} | {r['hard']} |")
    n = tot["n"] or 1
    print(f"| **all** | **{tot['n']}** | **{tot['hold']}** ({100*tot['hold']/n:.0f}%) | **{tot['pass']}** | "
          f"**{tot['part2']}** | **{tot['hard']}** ({100*tot['hard']/n:.0f}%) |")
    if complete and not (0.40 <= tot["hard"] / n <= 0.45):
        errs.append(f"hard share {tot['hard']/n:.3f} outside 0.40-0.45")
    if errs:
        print("\nERRORS:"); [print("  " + e) for e in errs]
        sys.exit(1)
    if not complete:
        print(f"\npartial check: {len(present)} of 10 batches present; no file written"); return
    out = os.path.join(HERE, "test7b.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for i, b in enumerate(blocks, 1):
            f.write(json.dumps({"id": f"R7B-{i:04d}", "kind": b["kind"], "hold": b["hold"], "part2": b["part2"],
                                "hard": b["hard"], "subject": b["subject"], "text": b["text"], "why": b["why"]},
                               ensure_ascii=False) + "\n")
    print(f"\nwrote {out}: {len(blocks)} lines, sha256 {hashlib.sha256(open(out,'rb').read()).hexdigest()}")

if __name__ == "__main__":
    main()
