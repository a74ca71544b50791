"""The official 10Duke Scale Python SDK (tenduke-scale 2.3.0), unchanged, as a confidential
application: its Scale JWT authorization (`Authorization: ScaleJwt <JWT>`, signed with the
application's own key pair) checks out and releases for the consumer its `sub` names (by the
consumer's connected identity) or its `lcid` names; tokens of the wrong issuer or key, and for no
consumer, are refused with their codes.

Run by tests/http_identity.rs:
`python scale_sdk_scale_jwt.py <server url> <private key PEM file> <key id> <iss> <sub> <consumer id>`.
Prints `PASS <scenario>` and exits non-zero on a failure.
"""

import sys
import time
import uuid
from datetime import timedelta

import jwt
import requests
from tenduke_core.config import TendukeConfig
from tenduke_scale.auth.scale_jwt_auth_provider import ScaleJwtAuth, ScaleJwtClaims
from tenduke_scale.license_checkout import (
    ClientDetails,
    EnforcedLicenseCheckoutClient,
    LicenseCheckoutArguments,
    LicenseToken,
)

from memory_key_store import MemoryKeyStore

URL, KEY_FILE, KEY_ID, ISSUER, SUBJECT, CONSUMER = sys.argv[1:7]
PRIVATE_KEY = open(KEY_FILE, encoding="ascii").read()
CONFIG = TendukeConfig(token_path="/tmp", public_key_path="/tmp", licensing_api_url=URL)


def client(claims):
    session = requests.Session()
    session.auth = ScaleJwtAuth(KEY_ID, PRIVATE_KEY, claims, CONFIG)
    return EnforcedLicenseCheckoutClient(URL, session, verification_key_store=MemoryKeyStore())


def checkout_and_release(claims, hw):
    sdk = client(claims)
    # A confidential application names the consumer it acts for (the SDK insists on it); the
    # server checks that it is the one the token names.
    consumer = uuid.UUID(CONSUMER)
    granted = sdk.checkout(
        [LicenseCheckoutArguments(product_name="Cad")], license_consumer_id=consumer, client_details=ClientDetails(hardware_id=hw)
    )[0]
    assert granted.status == "success", granted.claims
    assert granted.claims["licenseConsumerId"] == CONSUMER, granted.claims
    released = sdk.release(LicenseToken.make_release_arguments([granted]), license_consumer_id=consumer)
    assert len(released) == 1 and released[0].released, released


checkout_and_release(ScaleJwtClaims(sub=SUBJECT, iss=ISSUER, valid_for=timedelta(minutes=5)), "hw-sub")
print("PASS the_sub_names_the_consumer_by_its_connected_identity")

checkout_and_release(
    ScaleJwtClaims(sub="anything", iss=ISSUER, valid_for=timedelta(minutes=5), license_consumer_id=uuid.UUID(CONSUMER)),
    "hw-lcid",
)
print("PASS the_lcid_names_the_consumer")


def refused(claims, kid=KEY_ID):
    token = jwt.encode(claims, PRIVATE_KEY, algorithm="RS256", headers={"kid": kid})
    answer = requests.get(f"{URL}/authz/.txt?Cad", headers={"Authorization": f"ScaleJwt {token}"}, timeout=30)
    assert answer.status_code == 401, (answer.status_code, answer.text)
    return answer.json()["code"]


now = int(time.time())
good = {"sub": SUBJECT, "iss": ISSUER, "iat": now, "exp": now + 300}
assert refused({**good, "iss": "someone-else"}) == "untrustedIssuer"
assert refused(good, kid="unknown-key") == "unknownSigningKey"
assert refused({**good, "exp": now - 3600}) == "tokenExpired"
assert refused({**good, "sub": "nobody"}) == "notAuthorized"
print("PASS wrong_issuers_keys_times_and_subjects_are_refused")
