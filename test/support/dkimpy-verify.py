# Independent DKIM verifier for the tests: Debian's python3-dkim (dkimpy).
# stdin: the message; argv[1]: JSON {"<selector>._domainkey.<domain>": "<TXT value>"}.
# stdout: JSON list, one entry per DKIM-Signature, top to bottom: {"index", "ok"}.
import json
import sys

import dkim

records = json.loads(sys.argv[1])
message = sys.stdin.buffer.read()


def dnsfunc(name, timeout=5):
    key = name.decode() if isinstance(name, bytes) else name
    value = records.get(key.rstrip('.'))
    return value.encode() if value is not None else None


d = dkim.DKIM(message)
count = sum(1 for (k, _) in d.headers if k.lower() == b'dkim-signature')
results = []
for i in range(count):
    try:
        ok = dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc)
    except Exception:
        ok = False
    results.append({"index": i, "ok": bool(ok)})
print(json.dumps(results))
