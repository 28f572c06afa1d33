import json, collections
c = collections.defaultdict(lambda: [0,0,0,0,0])
for l in open("/work/phi4b/test4b.jsonl", encoding="utf-8"):
    r = json.loads(l); k = c[r["kind"]]
    k[0]+=1; k[1]+=r["hold"]; k[2]+= not r["hold"]; k[3]+=r["part2"]; k[4]+=r["hard"]
tot=[0]*5
print("kind n hold pass part2 hard")
for kind,v in sorted(c.items()):
    print(kind, *v); tot=[a+b for a,b in zip(tot,v)]
print("all", *tot)
