#!/usr/bin/env python3
"""Parse batch-NN.txt blocks, check counts and label rules, write test7a.jsonl."""
import glob, json, os, re, sys, hashlib
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ["results", "referral", "billing", "part2", "reminder", "announcement", "clinic_name",
         "medication", "mental_health", "pregnancy", "admin", "lookalike"]
WANT = {k: 20 for k in KINDS}
WANT["lookalike"] = 30
MIN_HOLD = {k: 10 for k in KINDS}; MIN_HOLD["lookalike"] = 12
MIN_PASS = {k: 6 for k in KINDS}; MIN_PASS["lookalike"] = 12
HOLD_RULES = {"H1", "H2", "H3"}
PASS_RULES = {"P1", "P2", "P3", "P4", "P5", "P6"}
HDR = re.compile(r"^### (\S+) ([01]) ([01]) ([01])\s*$")

def parse(path):
    out, cur, errs = [], None, []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if line.startswith("### "):
            m = HDR.match(line)
            if not m:
                errs.append(f"{path}:{n}: bad header {line!r}")
                cur = None
                continue
            cur = {"kind": m.group(1), "hold": m.group(2) == "1", "part2": m.group(3) == "1",
                   "hard": m.group(4) == "1", "subject": None, "why": None, "body": [],
                   "where": f"{os.path.basename(path)}:{n}"}
            out.append(cur)
        elif cur is None:
            if line.strip():
                errs.append(f"{path}:{n}: text outside a block")
        elif cur["subject"] is None and line.startswith("S: "):
            cur["subject"] = line[3:].strip()
        elif cur["why"] is None and cur["subject"] is not None and line.startswith("W: "):
            cur["why"] = line[3:].strip()
        else:
            cur["body"].append(line)
    return out, errs

def main():
    files = sorted(glob.glob(os.path.join(HERE, "batch-*.txt")))
    recs, errs = [], []
    for p in files:
        r, e = parse(p); recs += r; errs += e
    seen = {}
    for r in recs:
        w = r["where"]
        text = "\n".join(r["body"]).strip("\n")
        r["text"] = text
        if r["kind"] not in KINDS: errs.append(f"{w}: unknown kind {r['kind']}")
        if not r["subject"]: errs.append(f"{w}: missing S:")
        if not r["why"]: errs.append(f"{w}: missing W:"); continue
        if not text.strip(): errs.append(f"{w}: empty body")
        rule = re.match(r"^(H[123]|P[1-6])\b", r["why"])
        if not rule: errs.append(f"{w}: why does not start with a rule id"); continue
        rule = rule.group(1)
        if r["hold"] and rule not in HOLD_RULES: errs.append(f"{w}: hold but rule {rule}")
        if not r["hold"] and rule not in PASS_RULES: errs.append(f"{w}: pass but rule {rule}")
        if r["part2"] and (rule != "H3" or not r["hold"]): errs.append(f"{w}: part2 must be a hold citing H3")
        if rule == "H3" and not r["part2"]: errs.append(f"{w}: H3 without part2")
        key = re.sub(r"\s+", " ", (r["subject"] or "") + " " + text).strip().lower()
        if key in seen: errs.append(f"{w}: duplicate of {seen[key]}")
        seen[key] = w
        tkey = re.sub(r"\s+", " ", text).strip().lower()
        if ("T" + tkey) in seen: errs.append(f"{w}: duplicate body of {seen['T' + tkey]}")
        seen["T" + tkey] = w
    c = defaultdict(Counter)
    for r in recs:
        k = r["kind"]
        c[k]["n"] += 1; c[k]["hold"] += r["hold"]; c[k]["pass"] += (not r["hold"])
        c[k]["part2"] += r["part2"]; c[k]["hard"] += r["hard"]
    complete = len(files) == 10
    for k in KINDS:
        if complete:
            if c[k]["n"] != WANT[k]: errs.append(f"count {k}: {c[k]['n']} != {WANT[k]}")
            if c[k]["hold"] < MIN_HOLD[k]: errs.append(f"{k}: holds {c[k]['hold']} < {MIN_HOLD[k]}")
            if c[k]["pass"] < MIN_PASS[k]: errs.append(f"{k}: passes {c[k]['pass']} < {MIN_PASS[k]}")
    if complete:
        for p in files:
            n = sum(1 for r in recs if r["where"].startswith(os.path.basename(p) + ":"))
            if n != 25: errs.append(f"{os.path.basename(p)}: {n} blocks, want 25")
    print(f"{'kind':<14}{'n':>4}{'hold':>6}{'pass':>6}{'part2':>7}{'hard':>6}")
    tot = Counter()
    for k in KINDS:
        print(f"{k:<14}{c[k]['n']:>4}{c[k]['hold']:>6}{c[k]['pass']:>6}{c[k]['part2']:>7}{c[k]['hard']:>6}")
        tot.update(c[k])
    print(f"{'all':<14}{tot['n']:>4}{tot['hold']:>6}{tot['pass']:>6}{tot['part2']:>7}{tot['hard']:>6}")
    if tot["n"]:
        print(f"hold {tot['hold']/tot['n']:.0%}  hard {tot['hard']/tot['n']:.0%}  files {len(files)}")
    if errs:
        print("\nERRORS:"); [print("  " + e) for e in errs]
        sys.exit(1)
    if not complete:
        print("(partial: not writing test7a.jsonl)"); return
    outp = os.path.join(HERE, "test7a.jsonl")
    with open(outp, "w", encoding="utf-8") as f:
        for i, r in enumerate(recs, 1):
            f.write(json.dumps({"id": f"R7A-{i:04d}", "kind": r["kind"], "hold": r["hold"],
                                "part2": r["part2"], "hard": r["hard"], "subject": r["subject"],
                                "text": r["text"], "why": r["why"]}, ensure_ascii=False) + "\n")
    print("wrote", outp, "sha256", hashlib.sha256(open(outp, "rb").read()).hexdigest())

if __name__ == "__main__":
    main()
