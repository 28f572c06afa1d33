#!/usr/bin/env python3
"""Parse batch-01.txt .. batch-10.txt, check counts and rules, write test7e.jsonl."""
import json, os, re, sys, hashlib

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement",
         "clinic_name", "medication", "mental_health", "pregnancy", "admin", "lookalike"]
WANT = {k: 20 for k in KINDS}
WANT["lookalike"] = 30
MIN_HOLD = {k: 10 for k in KINDS}
MIN_PASS = {k: 6 for k in KINDS}
MIN_HOLD["lookalike"] = 12
MIN_PASS["lookalike"] = 12
HOLD_RULES = {"H1", "H2", "H3"}
PASS_RULES = {"P1", "P2", "P3", "P4", "P5", "P6"}
HDR = re.compile(r"^### (\S+) ([01]) ([01]) ([01])\s*$")

errors = []
records = []


def parse(path):
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, cur = [], None
    for i, line in enumerate(lines, 1):
        if line.startswith("### "):
            if cur:
                blocks.append(cur)
            cur = {"line": i, "hdr": line, "rest": []}
        elif cur is None:
            if line.strip():
                errors.append(f"{name}:{i}: text before first header")
        else:
            cur["rest"].append(line)
    if cur:
        blocks.append(cur)
    out = []
    for b in blocks:
        where = f"{name}:{b['line']}"
        m = HDR.match(b["hdr"])
        if not m:
            errors.append(f"{where}: bad header {b['hdr']!r}")
            continue
        kind, hold, part2, hard = m.group(1), m.group(2) == "1", m.group(3) == "1", m.group(4) == "1"
        rest = b["rest"]
        if len(rest) < 3 or not rest[0].startswith("S: ") or not rest[1].startswith("W: "):
            errors.append(f"{where}: expected S: and W: lines after header")
            continue
        subject = rest[0][3:].strip()
        why = rest[1][3:].strip()
        body = rest[2:]
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        text = "\n".join(body)
        if kind not in KINDS:
            errors.append(f"{where}: unknown kind {kind}")
        if not subject:
            errors.append(f"{where}: empty subject")
        if not text.strip():
            errors.append(f"{where}: empty body")
        rule = re.match(r"^(H[1-3]|P[1-6])\b", why)
        if not rule:
            errors.append(f"{where}: why does not start with a rule id: {why!r}")
        else:
            r = rule.group(1)
            if hold and r not in HOLD_RULES:
                errors.append(f"{where}: hold=1 but why cites {r}")
            if not hold and r not in PASS_RULES:
                errors.append(f"{where}: hold=0 but why cites {r}")
            if part2 and r != "H3":
                errors.append(f"{where}: part2=1 but why cites {r}")
            if r == "H3" and not part2:
                errors.append(f"{where}: H3 without part2=1")
        if part2 and not hold:
            errors.append(f"{where}: part2=1 requires hold=1")
        out.append({"kind": kind, "hold": hold, "part2": part2, "hard": hard,
                    "subject": subject, "text": text, "why": why, "_where": where})
    return out


def main():
    files = [os.path.join(HERE, f"batch-{n:02d}.txt") for n in range(1, 11)]
    present = [p for p in files if os.path.exists(p)]
    missing = [os.path.basename(p) for p in files if not os.path.exists(p)]
    for p in present:
        records.extend(parse(p))
    partial = bool(missing)
    # per-batch block counts
    for p in present:
        n = sum(1 for r in records if r["_where"].startswith(os.path.basename(p) + ":"))
        if n != 25:
            errors.append(f"{os.path.basename(p)}: {n} blocks, expected 25")
    # duplicates
    seen_text, seen_subj_text = {}, {}
    for r in records:
        key = re.sub(r"\s+", " ", r["text"].strip().lower())
        if key in seen_text:
            errors.append(f"{r['_where']}: duplicate text of {seen_text[key]}")
        else:
            seen_text[key] = r["_where"]
    # counts
    tab = {k: {"n": 0, "hold": 0, "pass": 0, "part2": 0, "hard": 0} for k in KINDS}
    for r in records:
        if r["kind"] not in tab:
            continue
        t = tab[r["kind"]]
        t["n"] += 1
        t["hold" if r["hold"] else "pass"] += 1
        t["part2"] += r["part2"]
        t["hard"] += r["hard"]
    if not partial:
        for k in KINDS:
            t = tab[k]
            if t["n"] != WANT[k]:
                errors.append(f"kind {k}: {t['n']} lines, expected {WANT[k]}")
            if t["hold"] < MIN_HOLD[k]:
                errors.append(f"kind {k}: {t['hold']} holds, need >= {MIN_HOLD[k]}")
            if t["pass"] < MIN_PASS[k]:
                errors.append(f"kind {k}: {t['pass']} passes, need >= {MIN_PASS[k]}")
    # table
    print("| kind | lines | hold | pass | part2 | hard |")
    print("|---|---|---|---|---|---|")
    tot = {"n": 0, "hold": 0, "pass": 0, "part2": 0, "hard": 0}
    for k in KINDS:
        t = tab[k]
        print(f"| `{k}` | {t['n']} | {t['hold']} | {t['pass']} | {t['part2']} | {t['hard']} |")
        for f in tot:
            tot[f] += t[f]
    n = tot["n"] or 1
    print(f"| **all** | **{tot['n']}** | **{tot['hold']}** ({100*tot['hold']/n:.0f}%) | **{tot['pass']}** | "
          f"**{tot['part2']}** | **{tot['hard']}** ({100*tot['hard']/n:.0f}%) |")
    if missing:
        print(f"partial check: missing {', '.join(missing)}; per-kind totals not enforced")
    if errors:
        print(f"\n{len(errors)} problem(s):")
        for e in errors:
            print("  " + e)
        sys.exit(1)
    if partial:
        print("partial check OK; test7e.jsonl not written")
        return
    outp = os.path.join(HERE, "test7e.jsonl")
    with open(outp, "w", encoding="utf-8") as f:
        for i, r in enumerate(records, 1):
            obj = {"id": f"R7E-{i:04d}", "kind": r["kind"], "hold": r["hold"], "part2": r["part2"],
                   "hard": r["hard"], "subject": r["subject"], "text": r["text"], "why": r["why"]}
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    with open(outp, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"\nwrote {outp}: {len(records)} lines")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()
