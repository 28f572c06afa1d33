#!/usr/bin/env python3
"""Convert /work/phi6d/batch-NN.txt source blocks into test6d.jsonl and check the counts."""
import json, os, re, sys, collections

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement", "clinic_name",
         "medication", "mental_health", "pregnancy", "admin", "lookalike"]
WANT = {k: 20 for k in KINDS}
WANT["lookalike"] = 30

def parse(path):
    blocks, cur = [], None
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if line.startswith("### "):
                if cur: blocks.append(cur)
                parts = line[4:].split()
                if len(parts) != 4 or parts[0] not in KINDS or any(p not in ("0", "1") for p in parts[1:]):
                    sys.exit(f"{path}:{n}: bad header {line!r}")
                cur = {"kind": parts[0], "hold": parts[1] == "1", "part2": parts[2] == "1",
                       "hard": parts[3] == "1", "subject": None, "why": None, "body": [], "src": f"{os.path.basename(path)}:{n}"}
            elif cur is None:
                if line.strip(): sys.exit(f"{path}:{n}: text before first header")
            elif cur["subject"] is None and line.startswith("S: "):
                cur["subject"] = line[3:].strip()
            elif cur["why"] is None and cur["subject"] is not None and line.startswith("W: "):
                cur["why"] = line[3:].strip()
            else:
                if cur["why"] is None: sys.exit(f"{path}:{n}: body before S:/W:")
                cur["body"].append(line)
    if cur: blocks.append(cur)
    return blocks

def main():
    files = sorted(f for f in os.listdir(HERE) if re.fullmatch(r"batch-\d\d\.txt", f))
    rows, errors = [], []
    for f in files:
        bl = parse(os.path.join(HERE, f))
        if len(bl) != 25: errors.append(f"{f}: {len(bl)} blocks, expected 25")
        rows.extend(bl)
    out = []
    for i, b in enumerate(rows, 1):
        text = "\n".join(b["body"]).strip("\n")
        if not text.strip(): errors.append(f"{b['src']}: empty body")
        if not b["subject"]: errors.append(f"{b['src']}: empty subject")
        why = b["why"] or ""
        m = re.match(r"(H[123]|P[1-6])\b", why)
        if not m: errors.append(f"{b['src']}: why does not start with a rule id: {why!r}")
        else:
            r = m.group(1)
            if b["hold"] and not r.startswith("H"): errors.append(f"{b['src']}: hold but why cites {r}")
            if not b["hold"] and not r.startswith("P"): errors.append(f"{b['src']}: pass but why cites {r}")
            if b["part2"] and r != "H3": errors.append(f"{b['src']}: part2 but why cites {r}")
            if r == "H3" and not b["part2"]: errors.append(f"{b['src']}: H3 but part2 false")
        if b["part2"] and not b["hold"]: errors.append(f"{b['src']}: part2 without hold")
        out.append({"id": f"R6D-{i:04d}", "kind": b["kind"], "hold": b["hold"], "part2": b["part2"],
                    "hard": b["hard"], "subject": b["subject"], "text": text, "why": why})
    c = collections.defaultdict(collections.Counter)
    for o in out:
        k = o["kind"]
        c[k]["lines"] += 1; c[k]["hold"] += o["hold"]; c[k]["pass"] += (not o["hold"])
        c[k]["part2"] += o["part2"]; c[k]["hard"] += o["hard"]
    complete = len(files) == 10
    for k in KINDS:
        s = c[k]
        if complete:
            if s["lines"] != WANT[k]: errors.append(f"{k}: {s['lines']} lines, expected {WANT[k]}")
            mh, mp = (12, 12) if k == "lookalike" else (10, 6)
            if s["hold"] < mh: errors.append(f"{k}: only {s['hold']} holds (min {mh})")
            if s["pass"] < mp: errors.append(f"{k}: only {s['pass']} passes (min {mp})")
    print(f"{'kind':14} lines hold pass part2 hard")
    tot = collections.Counter()
    for k in KINDS:
        s = c[k]; tot.update(s)
        print(f"{k:14} {s['lines']:5} {s['hold']:4} {s['pass']:4} {s['part2']:5} {s['hard']:4}")
    print(f"{'all':14} {tot['lines']:5} {tot['hold']:4} {tot['pass']:4} {tot['part2']:5} {tot['hard']:4}"
          f"  (hard {100*tot['hard']/max(1,tot['lines']):.0f}%, hold {100*tot['hold']/max(1,tot['lines']):.0f}%)")
    if complete and not (0.40 <= tot["hard"] / tot["lines"] <= 0.50):
        errors.append(f"hard share {tot['hard']}/{tot['lines']} outside 40-50%")
    if complete and len(out) != 250: errors.append(f"{len(out)} lines, expected 250")
    if errors:
        print("\n".join("ERROR " + e for e in errors)); sys.exit(1)
    with open(os.path.join(HERE, "test6d.jsonl"), "w", encoding="utf-8") as f:
        for o in out: f.write(json.dumps(o, ensure_ascii=False) + "\n")
    print(f"wrote {len(out)} lines to test6d.jsonl")

if __name__ == "__main__":
    main()
