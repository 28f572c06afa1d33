#!/usr/bin/env python3
"""Known-answer vectors for Mailward's v2 sealed format (src/kernel/crypto/envelope.ts), made with
pyca/cryptography's AES-GCM and Python's zlib: an implementation independent of the one under test.
Run: python3 make-vectors.py > v2.json"""
import json
import zlib

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK = bytes(range(0x00, 0x20))
DATA_KEY = bytes(range(0x20, 0x40))
WRAP_IV = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaab")
PAYLOAD_IV = bytes.fromhex("b0b1b2b3b4b5b6b7b8b9babb")
KV = "1"
AAD = "mailward/message/v1|org_x|mbx_y|msg_z|raw"


def seal(plaintext: bytes, compress: bool) -> dict:
    flags = 0
    pt = plaintext
    if compress:
        c = zlib.compressobj(level=6, wbits=-15)
        z = c.compress(plaintext) + c.flush()
        if len(z) < len(plaintext):
            pt, flags = z, 1
    wrapped = AESGCM(KEK).encrypt(WRAP_IV, DATA_KEY, b"mailward/kek-wrap/v1|" + AAD.encode())
    payload = AESGCM(DATA_KEY).encrypt(PAYLOAD_IV, pt, bytes([2, flags]) + AAD.encode())
    sealed = bytes([2, flags, len(KV)]) + KV.encode() + WRAP_IV + wrapped + PAYLOAD_IV + payload
    return {
        "compress": compress,
        "flags": flags,
        "plaintext_hex": plaintext.hex(),
        "sealed_hex": sealed.hex(),
    }


text = b"Subject: Results\r\n\r\n" + b"Potassium 4.1 mmol/L, within range. " * 8
print(
    json.dumps(
        {
            "kek_version": KV,
            "kek_hex": KEK.hex(),
            "data_key_hex": DATA_KEY.hex(),
            "wrap_iv_hex": WRAP_IV.hex(),
            "payload_iv_hex": PAYLOAD_IV.hex(),
            "aad": AAD,
            "cases": [seal(b"", False), seal(b"hello, sealed world", False), seal(text, True)],
        },
        indent=2,
    )
)
