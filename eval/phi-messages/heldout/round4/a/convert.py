#!/usr/bin/env python3
"""Convert /work/phi4/batch-NN.txt blocks to /work/phi4/test4.jsonl.
Block format:
### <kind> HOLD|PASS [P2] [HARD]
S: <subject>
W: <why>
<body lines ... until next ### line>
Rebuilds test4.jsonl from all batch files in order (ids W4-0001.. are stable, so this equals appending batch by batch)."""
import glob, json, re, sys, collections
KINDS = ["results","referral","billing","part2","reminder","announcement","clinic_name","medication",
         "mental_health","pregnancy","admin","lookalike"]
out, errs = [], []
for fn in sorted(glob.glob('/work/phi4/batch-*.txt')):
    raw = open(fn, encoding='utf-8').read()
    blocks = re.split(r'(?m)^### ', raw)
    for b in blocks[1:]:
        lines = b.split('\n')
        head = lines[0].split()
        kind, lab, flags = head[0], head[1], set(head[2:])
        where = f"{fn}: {lines[0]}"
        if kind not in KINDS: errs.append(f"bad kind {where}")
        if lab not in ("HOLD","PASS"): errs.append(f"bad label {where}")
        if not flags <= {"P2","HARD"}: errs.append(f"bad flags {where}")
        if not lines[1].startswith("S: ") or not lines[2].startswith("W: "):
            errs.append(f"missing S/W {where}"); continue
        subj, why = lines[1][3:].strip(), lines[2][3:].strip()
        body = '\n'.join(lines[3:]).strip('\n').rstrip()
        hold, p2, hard = lab == "HOLD", "P2" in flags, "HARD" in flags
        if p2 and not hold: errs.append(f"part2 pass {where}")
        m = re.match(r'(H[123]|P[1-6])\b', why)
        if not m: errs.append(f"why rule {where}")
        elif (m.group(1)[0] == 'H') != hold: errs.append(f"why/label mismatch {where}")
        if p2 and not why.startswith("H3"): errs.append(f"part2 without H3 {where}")
        if not body: errs.append(f"empty body {where}")
        out.append(dict(kind=kind, hold=hold, part2=p2, hard=hard, subject=subj, text=body, why=why))
if errs:
    print("\n".join(errs)); sys.exit(1)
seen = set()
for x in out:
    if x['text'] in seen: print("duplicate text", x['subject']); sys.exit(1)
    seen.add(x['text'])
with open('/work/phi4/test4.jsonl', 'w', encoding='utf-8') as f:
    for i, x in enumerate(out, 1):
        rec = {"id": f"W4-{i:04d}", **x}
        rec = {k: rec[k] for k in ["id","kind","hold","part2","hard","subject","text","why"]}
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
c = collections.defaultdict(lambda: [0,0,0,0,0])
for x in out:
    r = c[x['kind']]; r[0]+=1; r[1]+=x['hold']; r[2]+=not x['hold']; r[3]+=x['part2']; r[4]+=x['hard']
print(f"{'kind':14} n hold pass p2 hard")
for k in KINDS:
    r = c[k]; print(f"{k:14} {r[0]:3} {r[1]:3} {r[2]:3} {r[3]:3} {r[4]:3}")
t = [sum(c[k][i] for k in KINDS) for i in range(5)]
print(f"{'all':14} {t[0]:3} {t[1]:3} {t[2]:3} {t[3]:3} {t[4]:3}")
