#!/usr/bin/env python3
# Convert batch-NN.txt blocks to JSON lines, appending to test5a.jsonl.
# Block: "### kind hold part2 hard" (0/1 each), then "S: subject", "W: why", then body lines.
import json, sys, re, os
KINDS={"results","referral","billing","part2","reminder","announcement","clinic_name","medication","mental_health","pregnancy","admin","lookalike"}
out="/work/phi5a/test5a.jsonl"
existing=[json.loads(l) for l in open(out,encoding="utf-8")] if os.path.exists(out) else []
n=len(existing)
for path in sys.argv[1:]:
    raw=open(path,encoding="utf-8").read()
    blocks=[b for b in re.split(r'^### ',raw,flags=re.M) if b.strip()]
    recs=[]
    for b in blocks:
        lines=b.split("\n")
        kind,h,p2,hd=lines[0].split()
        assert kind in KINDS,(path,lines[0])
        subj=why=None; body=[]
        for ln in lines[1:]:
            if subj is None and ln.startswith("S: "): subj=ln[3:]
            elif why is None and ln.startswith("W: "): why=ln[3:]
            else: body.append(ln)
        text="\n".join(body).strip("\n")
        assert subj is not None and why and text,(path,lines[0],subj)
        hold=h=="1"; part2=p2=="1"; hard=hd=="1"
        assert not part2 or hold
        assert re.match(r'^(H[123]|P[1-6])\b',why),why
        assert (why.startswith("H"))==hold,(subj,why)
        if part2: assert why.startswith("H3")
        n+=1
        recs.append({"id":f"R5A-{n:04d}","kind":kind,"hold":hold,"part2":part2,"hard":hard,"subject":subj,"text":text,"why":why})
    with open(out,"a",encoding="utf-8") as f:
        for r in recs: f.write(json.dumps(r,ensure_ascii=False)+"\n")
    print(path,len(recs),"total",n)
