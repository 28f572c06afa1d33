#!/usr/bin/env python3
"""Parse batch-NN.txt, check counts and labelling rules, write test7c.jsonl (stdlib only)."""
import json, os, re, sys, hashlib

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement", "clinic_name",
         "medication", "mental_health", "pregnancy", "admin", "lookalike"]
WANT = {k: 20 for k in KINDS}
WANT["lookalike"] = 30
MIN = {k: (10, 6) for k in KINDS}
MIN["lookalike"] = (12, 12)
HDR = re.compile(r"^### (\w+) ([01]) ([01]) ([01])\s*$")

def parse(path, errors):
    blocks, cur = [], None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if line.startswith("### "):
            m = HDR.match(line)
            if not m:
                errors.append(f"{path}:{n}: bad header {line!r}")
                cur = None
                continue
            cur = {"kind": m.group(1), "hold": m.group(2) == "1", "part2": m.group(3) == "1",
                   "hard": m.group(4) == "1", "subject": None, "why": None, "body": [], "src": f"{os.path.basename(path)}:{n}"}
            blocks.append(cur)
        elif cur is None:
            if line.strip():
                errors.append(f"{path}:{n}: text outside a block")
        elif cur["subject"] is None and not cur["body"] and line.startswith("S: "):
            cur["subject"] = line[3:].strip()
        elif cur["why"] is None and not cur["body"] and line.startswith("W: "):
            cur["why"] = line[3:].strip()
        else:
            cur["body"].append(line)
    for b in blocks:
        body = b.pop("body")
        while body and not body[0].strip():
            body.pop(0)
        while body and not body[-1].strip():
            body.pop()
        b["text"] = "\n".join(body)
    return blocks

def main():
    errors, allb = [], []
    for i in range(1, 11):
        p = os.path.join(HERE, f"batch-{i:02d}.txt")
        if not os.path.exists(p):
            errors.append(f"missing {p}")
            continue
        bl = parse(p, errors)
        if len(bl) != 25:
            errors.append(f"{os.path.basename(p)}: {len(bl)} blocks, want 25")
        allb.extend(bl)
    seen = {}
    for b in allb:
        s = b["src"]
        if b["kind"] not in WANT:
            errors.append(f"{s}: unknown kind {b['kind']}")
        if not b["subject"]:
            errors.append(f"{s}: no subject")
        if not b["why"]:
            errors.append(f"{s}: no why")
            continue
        if not b["text"].strip():
            errors.append(f"{s}: empty body")
        rule = b["why"][:2]
        if b["hold"] and rule not in ("H1", "H2", "H3"):
            errors.append(f"{s}: hold but why starts {rule!r}")
        if not b["hold"] and rule not in ("P1", "P2", "P3", "P4", "P5", "P6"):
            errors.append(f"{s}: pass but why starts {rule!r}")
        if b["part2"] != (rule == "H3"):
            errors.append(f"{s}: part2={b['part2']} but why rule {rule}")
        if b["part2"] and not b["hold"]:
            errors.append(f"{s}: part2 must be a hold")
        key = re.sub(r"\s+", " ", b["text"].strip().lower())
        if key in seen:
            errors.append(f"{s}: duplicate text of {seen[key]}")
        seen[key] = s
    rows = []
    for k in KINDS:
        kb = [b for b in allb if b["kind"] == k]
        h = sum(b["hold"] for b in kb)
        p = len(kb) - h
        rows.append((k, len(kb), h, p, sum(b["part2"] for b in kb), sum(b["hard"] for b in kb)))
        if len(kb) != WANT[k]:
            errors.append(f"kind {k}: {len(kb)} messages, want {WANT[k]}")
        if h < MIN[k][0] or p < MIN[k][1]:
            errors.append(f"kind {k}: {h} holds / {p} passes, want >= {MIN[k][0]} / {MIN[k][1]}")
    n = len(allb)
    hard = sum(b["hard"] for b in allb)
    print("| kind | n | hold | pass | part2 | hard |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| `%s` | %d | %d | %d | %d | %d |" % r)
    th = sum(r[2] for r in rows)
    print("| **all** | **%d** | **%d** | **%d** | **%d** | **%d (%.0f%%)** |" % (
        n, th, n - th, sum(r[4] for r in rows), hard, 100.0 * hard / n if n else 0))
    if n and not (0.38 <= hard / n <= 0.47):
        errors.append(f"hard share {hard/n:.2f} outside about 40-45%")
    if errors:
        print("\nPROBLEMS:")
        for e in errors:
            print("  " + e)
        if "--partial" not in sys.argv:
            sys.exit(1)
        return
    out = os.path.join(HERE, "test7c.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for i, b in enumerate(allb, 1):
            f.write(json.dumps({"id": f"R7C-{i:04d}", "kind": b["kind"], "hold": b["hold"], "part2": b["part2"],
                                "hard": b["hard"], "subject": b["subject"], "text": b["text"], "why": b["why"]},
                               ensure_ascii=False) + "\n")
    with open(out, "rb") as f:
        print(f"\nwrote {out} ({n} lines) sha256 {hashlib.sha256(f.read()).hexdigest()}")

if __name__ == "__main__":
    main()
