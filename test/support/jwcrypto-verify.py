# Independent JOSE verifier for the tests: Debian's python3-jwcrypto.
# argv[1]: the JWK (JSON); argv[2]: a compact JWS. stdout: the verified payload (JSON); exit 1 when it does not verify.
import json
import sys

from jwcrypto import jwk, jws

key = jwk.JWK(**json.loads(sys.argv[1]))
token = jws.JWS()
try:
    token.deserialize(sys.argv[2])
    token.verify(key, alg='ES256')
except Exception as e:  # noqa: BLE001 - any failure is a failed verification
    print(f'invalid: {type(e).__name__}', file=sys.stderr)
    sys.exit(1)
print(token.payload.decode())
