"""The other side of messaging/tests/interop.rs: packs and unpacks DIDComm v2 messages with
the `didcomm` package from PyPI (SICPA's pure-Python implementation), so that our envelopes
are checked against an implementation we did not write.

Reads a JSON list of requests on stdin and writes the list of answers on stdout, each
{"ok": answer} or {"error": "text"}. A request is one of:
  {"op": "pack", "docs": [...], "secrets": [{"kid", "jwk"}], "message": {...},
   "to": DID, "from": DID or null, "sign_from": DID URL or null, "enc_anon": "A256CBC-HS512"|"XC20P"|"A256GCM",
   "forward_via": [mediator key DID URLs] or absent (then wrapped in a Routing 2.0 forward)}
    -> {"packed": "<JSON text>"}
  {"op": "unpack", "docs": [...], "secrets": [...], "packed": "<JSON text>"}
    -> {"message": {...}, "metadata": {...}}
  {"op": "sign", "docs": [...], "secrets": [...], "message": {...}, "sign_from": DID URL,
   "protected_kid": DID URL or absent}
    -> {"packed": "<JSON text>"}: a signed message as `didcomm` signs it (its key lookup, Authlib's
       JWS), the signer's `kid` in the unprotected header and, when given, `protected_kid` in
       the protected one too, as other DIDComm implementations write it.
"""

import asyncio
import json
import sys

from authlib.jose import JsonWebSignature

from didcomm.common.algorithms import AnonCryptAlg
from didcomm.common.types import DIDCommMessageTypes
from didcomm.core.keys.sign_keys_selector import find_signing_key
from didcomm.core.serialization import dict_to_json_bytes
from didcomm.core.utils import extract_key, extract_sign_alg
from didcomm.common.resolvers import ResolversConfig
from didcomm.common.types import VerificationMaterial, VerificationMaterialFormat, VerificationMethodType
from didcomm.did_doc.did_doc import DIDDoc
from didcomm.did_doc.did_resolver_in_memory import DIDResolverInMemory
from didcomm.message import Message
from didcomm.pack_encrypted import PackEncryptedConfig, pack_encrypted
from didcomm.protocols.routing.forward import wrap_in_forward
from didcomm.secrets.secrets_resolver import Secret
from didcomm.secrets.secrets_resolver_in_memory import SecretsResolverInMemory
from didcomm.unpack import UnpackConfig, unpack

ANON = {
    "A256CBC-HS512": AnonCryptAlg.A256CBC_HS512_ECDH_ES_A256KW,
    "XC20P": AnonCryptAlg.XC20P_ECDH_ES_A256KW,
    "A256GCM": AnonCryptAlg.A256GCM_ECDH_ES_A256KW,
}


def resolvers(req):
    docs = [DIDDoc.deserialize(d) for d in req["docs"]]
    secrets = [
        Secret(
            kid=s["kid"],
            type=VerificationMethodType.JSON_WEB_KEY_2020,
            verification_material=VerificationMaterial(
                format=VerificationMaterialFormat.JWK, value=json.dumps(s["jwk"])
            ),
        )
        for s in req["secrets"]
    ]
    return ResolversConfig(
        secrets_resolver=SecretsResolverInMemory(secrets),
        did_resolver=DIDResolverInMemory(docs),
    )


def plain(value):
    """Metadata values as JSON: enums by name, everything else as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "name"):
        return value.name
    return str(value)


async def handle(req):
    config = resolvers(req)
    if req["op"] == "pack":
        res = await pack_encrypted(
            resolvers_config=config,
            message=Message.from_dict(req["message"]),
            to=req["to"],
            frm=req.get("from"),
            sign_frm=req.get("sign_from"),
            pack_config=PackEncryptedConfig(
                enc_alg_anon=ANON[req.get("enc_anon", "A256CBC-HS512")], forward=False
            ),
        )
        if req.get("forward_via"):
            fwd = await wrap_in_forward(
                config, json.loads(res.packed_msg), req["to"], req["forward_via"],
                ANON[req.get("enc_anon", "A256CBC-HS512")],
            )
            return {"packed": json.dumps(fwd.msg_encrypted.msg)}
        return {"packed": res.packed_msg}
    elif req["op"] == "sign":
        secret = await find_signing_key(req["sign_from"], config)
        protected = {"typ": DIDCommMessageTypes.SIGNED.value, "alg": extract_sign_alg(secret).value}
        if req.get("protected_kid"):
            protected["kid"] = req["protected_kid"]
        jws = JsonWebSignature().serialize_json(
            [{"protected": protected, "header": {"kid": secret.kid}}],
            dict_to_json_bytes(Message.from_dict(req["message"]).as_dict()),
            extract_key(secret),
        )
        return {"packed": json.dumps(jws)}
    elif req["op"] == "unpack":
        res = await unpack(config, req["packed"], UnpackConfig(unwrap_re_wrapping_forward=False))
        meta = {k: plain(v) for k, v in vars(res.metadata).items() if k != "signed_message"}
        return {"message": res.message.as_dict(), "metadata": meta}
    raise ValueError(f"unknown op {req['op']!r}")


async def main():
    answers = []
    for req in json.load(sys.stdin):
        try:
            answers.append({"ok": await handle(req)})
        except Exception as exc:  # every failure is an answer, so one case cannot hide the rest
            answers.append({"error": f"{type(exc).__name__}: {exc}"})
    json.dump(answers, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
