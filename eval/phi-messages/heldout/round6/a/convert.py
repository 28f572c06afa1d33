#!/usr/bin/env python3
"""Convert /work/phi6a/batch-NN.txt source blocks into test6a.jsonl and check them."""
import json, os, re, sys, collections

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement",
         "clinic_name", "medication", "mental_health", "pregnancy", "admin", "lookalike"]
PER_KIND = {k: 20 for k in KINDS}; PER_KIND["lookalike"] = 30
MIN_HOLD = {k: 10 for k in KINDS}; MIN_HOLD["lookalike"] = 12
MIN_PASS = {k: 6 for k in KINDS}; MIN_PASS["lookalike"] = 12
HEAD = re.compile(r"^### (\w+) ([01]) ([01]) ([01])\s*$")
RULE = re.compile(r"^(H[123]|P[1-6])\b")

def parse(path):
    blocks, cur = [], None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        m = HEAD.match(line)
        if m:
            cur = {"src": f"{os.path.basename(path)}:{n}", "kind": m.group(1), "hold": m.group(2) == "1",
                   "part2": m.group(3) == "1", "hard": m.group(4) == "1", "body": []}
            blocks.append(cur)
            continue
        if line.startswith("###"):
            sys.exit(f"{path}:{n}: malformed header: {line!r}")
        if cur is None:
            if line.strip():
                sys.exit(f"{path}:{n}: text before first header")
            continue
        if "subject" not in cur:
            if not line.startswith("S: "):
                sys.exit(f"{cur['src']}: expected 'S: ' line, got {line!r}")
            cur["subject"] = line[3:].strip()
        elif "why" not in cur:
            if not line.startswith("W: "):
                sys.exit(f"{cur['src']}: expected 'W: ' line, got {line!r}")
            cur["why"] = line[3:].strip()
        else:
            cur["body"].append(line)
    return blocks

def main():
    files = sorted(f for f in os.listdir(HERE) if re.fullmatch(r"batch-\d\d\.txt", f))
    recs, errors = [], []
    for fn in files:
        bl = parse(os.path.join(HERE, fn))
        if len(bl) != 25:
            errors.append(f"{fn}: {len(bl)} blocks, expected 25")
        for b in bl:
            text = "\n".join(b["body"]).strip("\n")
            text = "\n".join(l.rstrip() for l in text.split("\n"))
            if b["kind"] not in KINDS: errors.append(f"{b['src']}: unknown kind {b['kind']}")
            if not b.get("subject"): errors.append(f"{b['src']}: empty subject")
            if not text.strip(): errors.append(f"{b['src']}: empty text")
            why = b.get("why", "")
            m = RULE.match(why)
            if not m:
                errors.append(f"{b['src']}: why does not start with a rule id: {why!r}")
            else:
                r = m.group(1)
                if b["hold"] and r[0] != "H": errors.append(f"{b['src']}: hold but why cites {r}")
                if not b["hold"] and r[0] != "P": errors.append(f"{b['src']}: pass but why cites {r}")
                if b["part2"] and r != "H3": errors.append(f"{b['src']}: part2 but why cites {r}")
                if r == "H3" and not b["part2"]: errors.append(f"{b['src']}: why cites H3 but part2 is 0")
            if b["part2"] and not b["hold"]: errors.append(f"{b['src']}: part2 without hold")
            recs.append({"kind": b["kind"], "hold": b["hold"], "part2": b["part2"], "hard": b["hard"],
                         "subject": b.get("subject", ""), "text": text, "why": why, "_src": b["src"]})
    seen = {}
    for r in recs:
        key = r["text"]
        if key in seen: errors.append(f"{r['_src']}: duplicate text of {seen[key]}")
        seen[key] = r["_src"]
    c = collections.defaultdict(collections.Counter)
    for r in recs:
        k = c[r["kind"]]; k["lines"] += 1; k["hold"] += r["hold"]; k["pass"] += (not r["hold"])
        k["part2"] += r["part2"]; k["hard"] += r["hard"]
    print(f"{'kind':14} lines hold pass part2 hard")
    tot = collections.Counter()
    for kd in KINDS:
        k = c[kd]; tot.update(k)
        print(f"{kd:14} {k['lines']:5} {k['hold']:4} {k['pass']:4} {k['part2']:5} {k['hard']:4}")
    print(f"{'all':14} {tot['lines']:5} {tot['hold']:4} {tot['pass']:4} {tot['part2']:5} {tot['hard']:4}"
          f"  (hard {100*tot['hard']/max(1,tot['lines']):.0f}%, hold {100*tot['hold']/max(1,tot['lines']):.0f}%)")
    final = "--partial" not in sys.argv
    if final:
        if len(recs) != 250: errors.append(f"{len(recs)} lines, expected 250")
        for kd in KINDS:
            k = c[kd]
            if k["lines"] != PER_KIND[kd]: errors.append(f"{kd}: {k['lines']} lines, expected {PER_KIND[kd]}")
            if k["hold"] < MIN_HOLD[kd]: errors.append(f"{kd}: {k['hold']} holds < {MIN_HOLD[kd]}")
            if k["pass"] < MIN_PASS[kd]: errors.append(f"{kd}: {k['pass']} passes < {MIN_PASS[kd]}")
        share = tot["hard"] / max(1, tot["lines"])
        if not 0.40 <= share <= 0.50: errors.append(f"hard share {share:.2f} outside 0.40-0.50")
    if errors:
        print("\n".join("ERROR " + e for e in errors)); sys.exit(1)
    out = os.path.join(HERE, "test6a.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for i, r in enumerate(recs, 1):
            o = {"id": f"R6A-{i:04d}", "kind": r["kind"], "hold": r["hold"], "part2": r["part2"], "hard": r["hard"],
                 "subject": r["subject"], "text": r["text"], "why": r["why"]}
            f.write(json.dumps(o, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {len(recs)} lines")

if __name__ == "__main__":
    main()
