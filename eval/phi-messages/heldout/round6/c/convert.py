#!/usr/bin/env python3
"""Convert /work/phi6c/batch-XX.txt source blocks into test6c.jsonl and check counts/labels."""
import json, re, sys, glob, os
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement",
         "clinic_name", "medication", "mental_health", "pregnancy", "admin", "lookalike"]
errors = []
records = []

def parse(path):
    blocks, cur = [], None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("### "):
                if cur: blocks.append(cur)
                parts = line[4:].split()
                if len(parts) != 4:
                    errors.append(f"{path}:{n}: bad header {line!r}"); cur = None; continue
                cur = {"kind": parts[0], "flags": parts[1:], "subject": None, "why": None,
                       "body": [], "src": f"{os.path.basename(path)}:{n}"}
            elif cur is not None:
                if cur["subject"] is None and line.startswith("S: "):
                    cur["subject"] = line[3:].strip()
                elif cur["why"] is None and line.startswith("W: "):
                    cur["why"] = line[3:].strip()
                else:
                    cur["body"].append(line)
    if cur: blocks.append(cur)
    return blocks

files = sorted(glob.glob(os.path.join(HERE, "batch-*.txt")))
for path in files:
    bl = parse(path)
    if len(bl) != 25:
        errors.append(f"{path}: {len(bl)} blocks, expected 25")
    for b in bl:
        k = b["kind"]
        if k not in KINDS: errors.append(f"{b['src']}: unknown kind {k}")
        try:
            hold, part2, hard = [{"1": True, "0": False}[x] for x in b["flags"]]
        except KeyError:
            errors.append(f"{b['src']}: flags must be 1/0"); continue
        body = b["body"]
        while body and not body[0].strip(): body.pop(0)
        while body and not body[-1].strip(): body.pop()
        text = "\n".join(body)
        if not b["subject"]: errors.append(f"{b['src']}: missing subject")
        if not b["why"]: errors.append(f"{b['src']}: missing why")
        if not text.strip(): errors.append(f"{b['src']}: empty body")
        why = b["why"] or ""
        m = re.match(r"^(H[123]|P[1-6])\b", why)
        if not m:
            errors.append(f"{b['src']}: why does not start with a rule id: {why!r}")
        else:
            rule = m.group(1)
            if hold and not rule.startswith("H"): errors.append(f"{b['src']}: hold but why cites {rule}")
            if not hold and not rule.startswith("P"): errors.append(f"{b['src']}: pass but why cites {rule}")
            if part2 and rule != "H3": errors.append(f"{b['src']}: part2 but why cites {rule}")
            if rule == "H3" and not part2: errors.append(f"{b['src']}: H3 cited but part2 false")
        if part2 and not hold: errors.append(f"{b['src']}: part2 implies hold")
        records.append({"kind": k, "hold": hold, "part2": part2, "hard": hard,
                        "subject": b["subject"] or "", "text": text, "why": why, "_src": b["src"]})

for i, r in enumerate(records, 1):
    r["id"] = f"R6C-{i:04d}"

# counts and minimums
by = defaultdict(Counter)
for r in records:
    c = by[r["kind"]]
    c["lines"] += 1; c["hold"] += r["hold"]; c["pass"] += (not r["hold"])
    c["part2"] += r["part2"]; c["hard"] += r["hard"]
for k in KINDS:
    c = by[k]
    want = 30 if k == "lookalike" else 20
    mh, mp = (12, 12) if k == "lookalike" else (10, 6)
    if len(files) == 10:
        if c["lines"] != want: errors.append(f"kind {k}: {c['lines']} lines, expected {want}")
        if c["hold"] < mh: errors.append(f"kind {k}: {c['hold']} holds < {mh}")
        if c["pass"] < mp: errors.append(f"kind {k}: {c['pass']} passes < {mp}")
subjects = Counter(r["subject"] for r in records)
for s, n in subjects.items():
    if n > 1: errors.append(f"duplicate subject x{n}: {s!r}")
texts = Counter(r["text"] for r in records)
for s, n in texts.items():
    if n > 1: errors.append(f"duplicate text x{n}: {s[:60]!r}")

print("| kind | lines | hold | pass | part2 | hard |")
print("|---|---|---|---|---|---|")
tot = Counter()
for k in KINDS:
    c = by[k]; tot.update(c)
    print(f"| `{k}` | {c['lines']} | {c['hold']} | {c['pass']} | {c['part2']} | {c['hard']} |")
print(f"| **all** | **{tot['lines']}** | **{tot['hold']}** | **{tot['pass']}** | **{tot['part2']}** | **{tot['hard']}** |")
if tot["lines"]:
    print(f"hold share {tot['hold']/tot['lines']:.0%}, hard share {tot['hard']/tot['lines']:.0%}")

if "--ids" in sys.argv:
    for r in records:
        print(r["id"], r["_src"], r["kind"], int(r["hold"]), int(r["part2"]), int(r["hard"]), r["subject"][:50])

if errors:
    print("\nERRORS:"); [print(" ", e) for e in errors]
    sys.exit(1)
with open(os.path.join(HERE, "test6c.jsonl"), "w", encoding="utf-8") as f:
    for r in records:
        o = {k: r[k] for k in ["id", "kind", "hold", "part2", "hard", "subject", "text", "why"]}
        f.write(json.dumps(o, ensure_ascii=False) + "\n")
print(f"wrote {len(records)} lines to test6c.jsonl")
