import json,sys,re,os
KINDS={"results","referral","billing","part2","reminder","announcement","clinic_name","medication","mental_health","pregnancy","admin","lookalike"}
out="/work/phi5b/test5b.jsonl"
n=0
if os.path.exists(out):
    n=sum(1 for _ in open(out,encoding="utf-8"))
src=open(sys.argv[1],encoding="utf-8").read()
blocks=[b for b in re.split(r'^### ',src,flags=re.M) if b.strip()]
rows=[]
for b in blocks:
    lines=b.rstrip("\n").split("\n")
    kind,h,p2,hd=[x.strip() for x in lines[0].split("|")]
    assert kind in KINDS,kind
    assert h in "HP" and p2 in "2-" and hd in "h-",lines[0]
    assert lines[1].startswith("S: "),lines[1]
    subj=lines[1][3:]
    wi=[i for i,l in enumerate(lines) if l.startswith("W: ")]
    assert len(wi)==1,lines[0]+subj
    text="\n".join(lines[2:wi[0]]).strip("\n")
    why=lines[wi[0]][3:]
    hold=h=="H"; part2=p2=="2"
    assert text
    assert not(part2 and not hold)
    assert why[:2] in ("H1","H2","H3","P1","P2","P3","P4","P5","P6"),why
    assert (why[0]=="H")==hold,(subj,why)
    if part2: assert why.startswith("H3"),subj
    n+=1
    rows.append({"id":"R5B-%04d"%n,"kind":kind,"hold":hold,"part2":part2,"hard":hd=="h","subject":subj,"text":text,"why":why})
with open(out,"a",encoding="utf-8") as f:
    for r in rows: f.write(json.dumps(r,ensure_ascii=False)+"\n")
print(len(rows),"added; total",n)
