"""Independent check of Leasehold's tokens (run by engine/tests/tokens_python.rs).

Verifies every token with PyJWT against the JWKS, the way the official tenduke-scale client does
(key chosen by the header's kid; exp, nbf and iat checked; any aud refused), decrypts the JWE
tokens with jwcrypto and the client's private key, reads the Scale claims as the SDK's
LicenseToken does, and checks that a tampered token fails.

Usage: verify_tokens.py DIR  (DIR holds jwks.json, tokens.json and client_key.pem)
"""

import json
import sys

import jwt
from jwcrypto import jwe, jwk

SCALE_DIMENSIONS = {"SEATS", "USE_COUNT", "USE_TIME"}


def read_like_tenduke_scale(claims):
    """The reads tenduke_scale.license_checkout.LicenseToken makes, with the types it expects."""
    if claims.get("status") == "success":
        assert isinstance(claims["leaseId"], str) and claims["leaseId"], claims
        assert isinstance(claims["productName"], str), claims
        assert isinstance(claims["features"], list), claims
        assert isinstance(claims["qty"], int), claims
        assert claims["qtyDimension"] in SCALE_DIMENSIONS, claims
        assert claims["qtyEnforcementType"] in {"ENFORCED", "METERED"}, claims
        assert isinstance(claims["hbnbf"], int), claims
        assert isinstance(claims["jti"], str), claims
        assert isinstance(claims["clientClaims"], dict), claims
    elif claims.get("status") == "error":
        assert isinstance(claims["errorCode"], str), claims
        assert isinstance(claims["errorDescription"], str), claims
        assert "leaseId" not in claims, claims


def tamper(token):
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    swapped = "B" if signature[middle] == "A" else "A"
    return ".".join([head, payload, signature[:middle] + swapped + signature[middle + 1 :]])


def main(directory):
    with open(f"{directory}/jwks.json", encoding="utf-8") as f:
        keyset = jwt.PyJWKSet.from_dict(json.load(f))
    with open(f"{directory}/tokens.json", encoding="utf-8") as f:
        cases = json.load(f)
    with open(f"{directory}/client_key.pem", "rb") as f:
        client_key = jwk.JWK.from_pem(f.read())

    for case in cases:
        name, token = case["name"], case["token"]
        if case["encrypted"]:
            envelope = jwe.JWE()
            envelope.deserialize(token, key=client_key)
            header = envelope.jose_header
            assert header["alg"] == "RSA-OAEP" and header["enc"] == "A256CBC-HS512", (name, header)
            token = envelope.payload.decode("utf-8")
        header = jwt.get_unverified_header(token)
        assert header["alg"] == case["alg"], (name, header)
        assert header["typ"] == "JWT", (name, header)
        key = keyset[header["kid"]]
        claims = jwt.decode(token, key.key, algorithms=[case["alg"]])
        assert "aud" not in claims, (name, claims)
        for claim, value in case["expected"].items():
            assert claims.get(claim) == value, (name, claim, claims.get(claim), value)
        read_like_tenduke_scale(claims)
        try:
            jwt.decode(tamper(token), key.key, algorithms=[case["alg"]])
        except jwt.InvalidSignatureError:
            pass
        else:
            raise AssertionError(f"{name}: a tampered token verified")
        print(f"{name}: ok ({case['alg']}{', JWE' if case['encrypted'] else ''})")
    print(f"verified {len(cases)} tokens")


if __name__ == "__main__":
    main(sys.argv[1])
