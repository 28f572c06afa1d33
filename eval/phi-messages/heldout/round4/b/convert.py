#!/usr/bin/env python3
"""Convert one batch text file (blocks) to JSON lines appended to test4b.jsonl.
Block format:
### kind hold(1/0) part2(1/0) hard(1/0)
S: subject
text lines ...
W: why
"""
import json, sys, os, re
KINDS = {"results","referral","billing","part2","reminder","announcement","clinic_name","medication",
         "mental_health","pregnancy","admin","lookalike"}
OUT = "/work/phi4b/test4b.jsonl"
DONE = "/work/phi4b/.converted"
def parse(path):
    blocks, cur = [], None
    for raw in open(path, encoding="utf-8").read().split("\n"):
        if raw.startswith("### "):
            if cur: blocks.append(cur)
            f = raw[4:].split()
            assert len(f) == 4, raw
            cur = {"kind": f[0], "hold": f[1] == "1", "part2": f[2] == "1", "hard": f[3] == "1",
                   "subject": None, "lines": [], "why": None}
            assert f[1] in "01" and f[2] in "01" and f[3] in "01", raw
        elif cur is None:
            continue
        elif raw.startswith("S: ") and cur["subject"] is None:
            cur["subject"] = raw[3:].strip()
        elif raw.startswith("W: "):
            cur["why"] = raw[3:].strip()
        else:
            cur["lines"].append(raw)
    if cur: blocks.append(cur)
    return blocks
def main(path):
    done = open(DONE).read().split() if os.path.exists(DONE) else []
    name = os.path.basename(path)
    if name in done:
        sys.exit(f"{name} already converted")
    n = sum(1 for _ in open(OUT, encoding="utf-8")) if os.path.exists(OUT) else 0
    recs = []
    for b in parse(path):
        text = "\n".join(b["lines"]).strip("\n")
        assert b["kind"] in KINDS, b["kind"]
        assert b["subject"] is not None and text and b["why"], b
        assert re.match(r"^(H[123]|P[1-6])\b", b["why"]), b["why"]
        if b["part2"]: assert b["hold"] and b["why"].startswith("H3"), b
        if b["why"].startswith("H") and not b["hold"]: raise SystemExit("hold/why mismatch: " + b["subject"])
        if b["why"].startswith("P") and b["hold"]: raise SystemExit("hold/why mismatch: " + b["subject"])
        n += 1
        recs.append({"id": f"W5-{n:04d}", "kind": b["kind"], "hold": b["hold"], "part2": b["part2"],
                     "hard": b["hard"], "subject": b["subject"], "text": text, "why": b["why"]})
    with open(OUT, "a", encoding="utf-8") as f:
        for r in recs: f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(DONE, "a") as f: f.write(name + "\n")
    print(f"{name}: {len(recs)} lines, now {n}")
if __name__ == "__main__":
    main(sys.argv[1])
