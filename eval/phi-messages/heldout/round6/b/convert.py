#!/usr/bin/env python3
"""Convert /work/phi6b/batch-NN.txt source blocks into test6b.jsonl and check them.

Block format:
### kind hold part2 hard      (hold, part2, hard as 1/0)
S: subject
W: why
body lines ... until the next ### line (leading/trailing blank lines trimmed)
"""
import json, os, re, sys, glob
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement", "clinic_name",
         "medication", "mental_health", "pregnancy", "admin", "lookalike"]
TARGET = {k: 20 for k in KINDS}
TARGET["lookalike"] = 30
MIN_HOLD = {k: 10 for k in KINDS}; MIN_HOLD["lookalike"] = 12
MIN_PASS = {k: 6 for k in KINDS}; MIN_PASS["lookalike"] = 12
HEAD = re.compile(r"^### (\w+) ([01]) ([01]) ([01])\s*$")

def parse(path):
    recs, cur = [], None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if line.startswith("###"):
            m = HEAD.match(line)
            if not m:
                sys.exit(f"{path}:{n}: bad header {line!r}")
            cur = {"kind": m.group(1), "hold": m.group(2) == "1", "part2": m.group(3) == "1",
                   "hard": m.group(4) == "1", "subject": None, "why": None, "body": [], "src": f"{os.path.basename(path)}:{n}"}
            recs.append(cur)
            continue
        if cur is None:
            if line.strip():
                sys.exit(f"{path}:{n}: text before first header")
            continue
        if cur["subject"] is None:
            if not line.startswith("S: "):
                sys.exit(f"{path}:{n}: expected 'S: ' line")
            cur["subject"] = line[3:].strip()
            continue
        if cur["why"] is None:
            if not line.startswith("W: "):
                sys.exit(f"{path}:{n}: expected 'W: ' line")
            cur["why"] = line[3:].strip()
            continue
        cur["body"].append(line.rstrip())
    for r in recs:
        b = r["body"]
        while b and not b[0].strip(): b.pop(0)
        while b and not b[-1].strip(): b.pop()
        r["text"] = "\n".join(b)
    return recs

def main():
    files = sorted(glob.glob(os.path.join(HERE, "batch-*.txt")))
    recs, errors = [], []
    for p in files:
        got = parse(p)
        if len(got) != 25:
            errors.append(f"{os.path.basename(p)}: {len(got)} messages, expected 25")
        recs.extend(got)
    for r in recs:
        s = r["src"]
        if r["kind"] not in KINDS: errors.append(f"{s}: unknown kind {r['kind']}")
        if not r["subject"]: errors.append(f"{s}: empty subject")
        if not r["text"].strip(): errors.append(f"{s}: empty text")
        m = re.match(r"^(H[123]|P[1-6])\b", r["why"] or "")
        if not m: errors.append(f"{s}: why does not start with a rule id"); continue
        rule = m.group(1)
        if r["hold"] and not rule.startswith("H"): errors.append(f"{s}: hold but why cites {rule}")
        if not r["hold"] and not rule.startswith("P"): errors.append(f"{s}: pass but why cites {rule}")
        if r["part2"] and not r["hold"]: errors.append(f"{s}: part2 without hold")
        if r["part2"] and rule != "H3": errors.append(f"{s}: part2 but why cites {rule}")
        if rule == "H3" and not r["part2"]: errors.append(f"{s}: H3 but part2 false")
        if re.search(r"\b555-0(?!1\d\d)\d{3}\b", r["text"] + r["subject"]):
            errors.append(f"{s}: phone number outside 555-01xx")
    # duplicate texts
    seen = Counter(r["text"] for r in recs)
    for t, c in seen.items():
        if c > 1: errors.append(f"duplicate text x{c}: {t[:60]!r}")
    per = defaultdict(Counter)
    for r in recs:
        c = per[r["kind"]]
        c["lines"] += 1; c["hold"] += r["hold"]; c["pass"] += (not r["hold"])
        c["part2"] += r["part2"]; c["hard"] += r["hard"]
    complete = len(recs) == 250
    for k in KINDS:
        c = per[k]
        if complete:
            if c["lines"] != TARGET[k]: errors.append(f"{k}: {c['lines']} lines, expected {TARGET[k]}")
            if c["hold"] < MIN_HOLD[k]: errors.append(f"{k}: {c['hold']} holds < {MIN_HOLD[k]}")
            if c["pass"] < MIN_PASS[k]: errors.append(f"{k}: {c['pass']} passes < {MIN_PASS[k]}")
    print(f"{'kind':14} lines hold pass part2 hard")
    tot = Counter()
    for k in KINDS:
        c = per[k]; tot.update(c)
        print(f"{k:14} {c['lines']:5} {c['hold']:4} {c['pass']:4} {c['part2']:5} {c['hard']:4}")
    print(f"{'all':14} {tot['lines']:5} {tot['hold']:4} {tot['pass']:4} {tot['part2']:5} {tot['hard']:4}"
          f"  (hard {100*tot['hard']/max(1,tot['lines']):.0f}%)")
    if errors:
        print("\nERRORS:"); [print(" ", e) for e in errors]
        sys.exit(1)
    out = os.path.join(HERE, "test6b.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for i, r in enumerate(recs, 1):
            obj = {"id": f"R6B-{i:04d}", "kind": r["kind"], "hold": r["hold"], "part2": r["part2"],
                   "hard": r["hard"], "subject": r["subject"], "text": r["text"], "why": r["why"]}
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    print(f"\nwrote {out}: {len(recs)} lines" + ("" if complete else " (INCOMPLETE: fewer than 250)"))

if __name__ == "__main__":
    main()
