"""The official 10Duke Scale Python SDK (tenduke-scale 2.3.0), unchanged, against a real
`leasehold serve`: enforced checkout, heartbeat and release; license keys (and the revocation of
the older key when a newer one is activated); metered use; the describe reads; the errors the SDK
raises. The SDK verifies every token it receives through the server's JWKS
(/licensing-signing-keys/.well-known/jwks.json); this suite verifies each one again with plain
PyJWT against /.well-known/jwks.json, and decrypts the JWE a client public key asks for.

Run by tests/scale_sdk.rs and tests/cluster_clients.rs:
`python scale_sdk_suite.py <server url> <admin token> [product name prefix]`. Prints
`PASS <scenario>` for each scenario and exits non-zero on the first failure.
"""

import base64
import sys
import uuid

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk as jwcrypto_jwk
from tenduke_core.auth.auth_provider import BearerTokenAuth
from tenduke_core.exceptions import ApiError, NotFoundError
from tenduke_scale.exceptions.validation import HeartbeatTooEarlyError, InvalidLicenseKeyError
from tenduke_scale.license_checkout import (
    ClientDetails,
    EnforcedLicenseCheckoutClient,
    LicenseCheckoutArguments,
    LicenseHeartbeatArguments,
    LicenseReleaseArguments,
    LicenseToken,
    MeteredLicenseCheckoutClient,
)
from tenduke_scale.licensing import QuantityDimension

from memory_key_store import MemoryKeyStore

URL, ADMIN_TOKEN = sys.argv[1], sys.argv[2]
# Product names are unique on a server: a run against a server that ran the suite before (another
# node of the same cluster) names its products with a prefix of its own.
PREFIX = sys.argv[3] if len(sys.argv) > 3 else ""
THREE_DEE, KEYED_APP, SLOW, METER = (PREFIX + name for name in ("ThreeDee", "KeyedApp", "Slow", "Meter"))


def admin(method, path, body=None):
    """An admin API call that must succeed."""
    response = requests.request(
        method, f"{URL}/admin{path}", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    )
    assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text}"
    return response.json()


JWKS = jwt.PyJWKClient(f"{URL}/.well-known/jwks.json")
SEEN_TOKENS = []


def verified(token):
    """The claims of `token`, checked independently of the SDK: RS256, a published key, in force."""
    key = JWKS.get_signing_key_from_jwt(token.raw_jwt if isinstance(token, LicenseToken) else token)
    raw = token.raw_jwt if isinstance(token, LicenseToken) else token
    claims = jwt.decode(raw, key.key, algorithms=["RS256"], options={"require": ["exp", "iat", "nbf"]})
    assert "aud" not in claims
    SEEN_TOKENS.append(raw)
    return claims


def all_verified(tokens):
    for token in tokens:
        assert verified(token) == token.claims
    return tokens


# ---- the data: a licensee, its consumer, products and licenses ----

licensee = admin("POST", "/licensees", {"name": "Acme", "kind": "organization"})["id"]
consumer = admin("POST", "/consumers", {"name": "dev", "kind": "user", "licensees": [licensee]})
CONSUMER_ID = uuid.UUID(consumer["id"])
API_KEY = consumer["api_key"]
admin("POST", "/products", {"name": THREE_DEE, "features": [{"name": "render"}, {"name": "simulate"}]})
admin("POST", "/products", {"name": KEYED_APP})
admin("POST", "/products", {"name": SLOW})
admin("POST", "/products", {"name": METER})
HW_MODEL = {"session_anchors": ["hw"]}
three_dee = admin(
    "POST",
    "/licenses",
    {"licensee": licensee, "product": THREE_DEE, "credit": {"dimension": "SEATS", "qty": 2}, "model": HW_MODEL},
)
older_key = admin(
    "POST",
    "/licenses",
    {"licensee": licensee, "product": KEYED_APP, "credit": {"dimension": "SEATS", "qty": 2}, "license_key": True,
     "model": HW_MODEL},
)
newer_key = admin(
    "POST",
    "/licenses",
    {"licensee": licensee, "product": KEYED_APP, "credit": {"dimension": "SEATS", "qty": 2}, "license_key": True,
     "model": HW_MODEL},
)
admin(
    "POST",
    "/licenses",
    {"licensee": licensee, "product": SLOW, "credit": {"dimension": "SEATS", "qty": 1},
     "model": {"heartbeat_interval_s": 3600}},
)
meter = admin(
    "POST",
    "/licenses",
    {"licensee": licensee, "product": METER, "credit": {"dimension": "USE_TIME", "qty": 60, "enforcement": "METERED"},
     "license_key": True},
)


def session(api_key=API_KEY):
    s = requests.Session()
    if api_key is not None:
        s.auth = BearerTokenAuth(lambda: api_key)
    return s


def enforced(api_key=API_KEY):
    return EnforcedLicenseCheckoutClient(URL, session(api_key), verification_key_store=MemoryKeyStore())


def metered(api_key=API_KEY):
    return MeteredLicenseCheckoutClient(URL, session(api_key), verification_key_store=MemoryKeyStore())


DESK = ClientDetails(hardware_id="hw-desk", hardware_label="Desk", version="1.4.2", installation_id="inst-1",
                     language="en")

SCENARIOS = []


def scenario(function):
    SCENARIOS.append(function)
    return function


@scenario
def checkout_heartbeat_and_release():
    client = enforced()
    tokens = all_verified(client.checkout(
        [LicenseCheckoutArguments(product_name=THREE_DEE), LicenseCheckoutArguments(product_name="Nothing")],
        license_consumer_id=CONSUMER_ID,
        client_details=DESK,
    ))
    granted, refused = tokens
    assert granted.status == "success", granted.claims
    assert granted.product_name == THREE_DEE and granted.features == ["render", "simulate"]
    assert granted.quantity_dimension == QuantityDimension.SEATS and granted.quantity == 1
    assert granted.claims["licenseId"] == three_dee["id"]
    assert granted.claims["licenseConsumerId"] == str(CONSUMER_ID)
    assert granted.claims["clientClaims"] == {
        "cliHwId": "hw-desk", "cliHwLabel": "Desk", "cliVersion": "1.4.2", "cliInstallationId": "inst-1",
        "cliLang": "en",
    }
    assert refused.status == "error" and refused.error_code == "noLicenseFound" and refused.lease_id is None

    renewed = all_verified(client.heartbeat(
        [LicenseHeartbeatArguments(lease_id=granted.lease_id)], license_consumer_id=CONSUMER_ID
    ))[0]
    assert renewed.status == "success"
    assert renewed.old_lease_id == granted.lease_id and renewed.lease_id != granted.lease_id
    stored = [t.lease_id for t in client.store.load()]
    assert renewed.lease_id in stored and granted.lease_id not in stored, stored

    stale = all_verified(client.heartbeat(
        [LicenseHeartbeatArguments(lease_id=granted.lease_id)], license_consumer_id=CONSUMER_ID
    ))[0]
    assert stale.error_code == "leaseIdNotFound"

    results = client.release(LicenseToken.make_release_arguments([renewed]), license_consumer_id=CONSUMER_ID)
    assert len(results) == 1 and results[0].released
    assert results[0].released_lease_id == renewed.lease_id
    assert str(results[0].released_license_id) == three_dee["id"]
    assert results[0].remaining_quantity == 2
    assert renewed.lease_id not in [t.lease_id for t in client.store.load()]


@scenario
def seats_run_out_and_the_refusal_is_a_signed_token():
    client = enforced()
    held = []
    for hw in ("a", "b"):
        token = all_verified(client.checkout(
            [LicenseCheckoutArguments(product_name=THREE_DEE)], license_consumer_id=CONSUMER_ID,
            client_details=ClientDetails(hardware_id=hw),
        ))[0]
        assert token.status == "success"
        held.append(token)
    third = all_verified(client.checkout(
        [LicenseCheckoutArguments(product_name=THREE_DEE)], license_consumer_id=CONSUMER_ID,
        client_details=ClientDetails(hardware_id="c"),
    ))[0]
    assert third.error_code == "maxConcurrentSessionsExceed", third.claims
    assert third.error_description
    released = client.release(LicenseToken.make_release_arguments(held), license_consumer_id=CONSUMER_ID)
    assert all(r.released for r in released)


@scenario
def a_heartbeat_before_hbnbf_is_refused_by_the_sdk_and_by_the_server():
    client = enforced()
    token = all_verified(client.checkout(
        [LicenseCheckoutArguments(product_name=SLOW)], license_consumer_id=CONSUMER_ID
    ))[0]
    assert token.status == "success"
    try:
        client.heartbeat([LicenseHeartbeatArguments(lease_id=token.lease_id)], license_consumer_id=CONSUMER_ID)
        raise AssertionError("the SDK should refuse a heartbeat before hbnbf")
    except HeartbeatTooEarlyError:
        pass
    # A client that does not check hbnbf itself gets the server's answer.
    unchecked = enforced()
    answer = all_verified(unchecked.heartbeat(
        [LicenseHeartbeatArguments(lease_id=token.lease_id)], license_consumer_id=CONSUMER_ID
    ))[0]
    assert answer.error_code == "heartbeatTooEarly", answer.claims
    assert client.release([token.to_release_argument()], license_consumer_id=CONSUMER_ID)[0].released


@scenario
def license_keys_check_out_renew_and_release_without_an_api_key():
    client = enforced(api_key=None)
    key = newer_key["license_key"]
    token = client.checkout_single_by_license_key(
        key, LicenseCheckoutArguments(product_name=KEYED_APP), client_details=ClientDetails(hardware_id="kiosk-1")
    )
    all_verified([token])
    assert token.status == "success", token.claims
    assert token.claims["licenseId"] == newer_key["id"]
    renewed = client.heartbeat_single_by_license_key(key, LicenseHeartbeatArguments(lease_id=token.lease_id))
    all_verified([renewed])
    assert renewed.old_lease_id == token.lease_id

    described = client.describe_license_key(key)
    assert [str(l.id) for l in described] == [newer_key["id"]]
    assert described[0].license_key.license_key == key
    bindings = client.describe_license_key_client_bindings(key, uuid.UUID(newer_key["id"]))
    assert [b.lease_id for b in bindings.client_bindings] == [renewed.lease_id]
    assert bindings.client_bindings[0].client_hardware_id == "kiosk-1"

    result = client.release_single_by_license_key(key, renewed.to_release_argument())
    assert result.released and result.released_lease_id == renewed.lease_id

    try:
        client.checkout_single_by_license_key("bad key!", LicenseCheckoutArguments(product_name=KEYED_APP))
        raise AssertionError("the SDK should refuse a malformed key")
    except InvalidLicenseKeyError:
        pass
    try:
        client.checkout_single_by_license_key("NO-SUCH-KEY-0000000000", LicenseCheckoutArguments(product_name="X"))
        raise AssertionError("an unknown key is not found")
    except NotFoundError as error:
        assert error.code == "noLicenseFound", error


@scenario
def activating_the_newer_key_revoked_the_older_one():
    client = enforced(api_key=None)
    older = client.checkout_single_by_license_key(
        older_key["license_key"], LicenseCheckoutArguments(product_name=KEYED_APP),
        client_details=ClientDetails(hardware_id="kiosk-2"),
    )
    all_verified([older])
    assert older.error_code == "licenseRevoked", older.claims
    assert client.describe_license_key(older_key["license_key"]) == []
    assert admin("GET", f"/licenses/{older_key['id']}")["status"] == "revoked"


@scenario
def metered_use_starts_heartbeats_and_ends():
    client = metered()
    started = all_verified(client.start(
        [LicenseCheckoutArguments(product_name=METER, quantity_dimension=QuantityDimension.USE_TIME, quantity=30)],
        license_consumer_id=CONSUMER_ID,
    ))[0]
    assert started.status == "success", started.claims
    assert started.claims["qtyEnforcementType"] == "METERED"
    assert started.quantity_dimension == QuantityDimension.USE_TIME
    beat = all_verified(client.heartbeat(
        [LicenseHeartbeatArguments(lease_id=started.lease_id, used_quantity=20)], license_consumer_id=CONSUMER_ID
    ))[0]
    assert beat.old_lease_id == started.lease_id and beat.claims["qtyVerified"] == 20
    ended = client.end([LicenseReleaseArguments(lease_id=beat.lease_id, final_quantity_used=90)],
                       license_consumer_id=CONSUMER_ID)[0]
    assert ended.released and ended.final_used_quantity == 90 and ended.remaining_quantity is None

    by_key = metered(api_key=None)
    key = meter["license_key"]
    started = by_key.start_single_by_license_key(key, LicenseCheckoutArguments(product_name=METER))
    all_verified([started])
    beat = by_key.heartbeat_single_by_license_key(key, LicenseHeartbeatArguments(lease_id=started.lease_id,
                                                                                  used_quantity=5))
    all_verified([beat])
    ended = by_key.end_single_by_license_key(key, LicenseReleaseArguments(lease_id=beat.lease_id,
                                                                          final_quantity_used=7))
    assert ended.released and ended.final_used_quantity == 7
    assert admin("GET", f"/licenses/{meter['id']}")["usage"]["used_qty"] == 97


@scenario
def the_describe_reads():
    client = enforced()
    held = all_verified(client.checkout(
        [LicenseCheckoutArguments(product_name=THREE_DEE)], license_consumer_id=CONSUMER_ID, client_details=DESK
    ))[0]
    licensees = client.describe_licensees(license_consumer_id=CONSUMER_ID)
    assert [(str(l.id), l.name, l.type.name) for l in licensees] == [(licensee, "Acme", "ORGANIZATION")]

    status = client.describe_licenses(uuid.UUID(licensee), license_consumer_id=CONSUMER_ID)
    by_product = {l.product_name: l for l in status.licenses}
    assert set(by_product) == {THREE_DEE, KEYED_APP, SLOW, METER}, by_product
    assert [f.feature for f in by_product[THREE_DEE].features] == ["render", "simulate"]
    assert by_product[THREE_DEE].quantity == 2

    in_use = client.describe_licenses_in_use(uuid.UUID(licensee), license_consumer_id=CONSUMER_ID)
    assert [b.lease_id for b in in_use.client_bindings] == [held.lease_id]
    binding = in_use.client_bindings[0]
    assert binding.client_hardware_id == "hw-desk" and binding.client_installation_id == "inst-1"
    assert binding.license_consumer.id == CONSUMER_ID and str(binding.license.id) == three_dee["id"]
    usage = client.describe_license_usage(uuid.UUID(licensee), uuid.UUID(three_dee["id"]),
                                          license_consumer_id=CONSUMER_ID)
    assert [b.lease_id for b in usage.client_bindings] == [held.lease_id]
    found = client.find_client_binding(uuid.UUID(licensee), uuid.UUID(held.lease_id))
    assert [b.lease_id for b in found.client_bindings] == [held.lease_id]

    flags = client.feature_flags(uuid.UUID(licensee), license_consumer_id=CONSUMER_ID, filter_value=THREE_DEE.lower())
    assert [(f.product_name, list(f.features)) for f in flags] == [(THREE_DEE, ["render", "simulate"])]
    token = client.feature_flags_as_jwt(uuid.UUID(licensee), license_consumer_id=CONSUMER_ID)
    assert verified(token._jwt)["featureFlags"] == token.feature_flags_dict
    assert token.feature_flags_dict[THREE_DEE] == ["render", "simulate"]
    assert token.licensee_id == uuid.UUID(licensee) and token.license_consumer_id == CONSUMER_ID
    client.release(LicenseToken.make_release_arguments([held]), license_consumer_id=CONSUMER_ID)


@scenario
def errors_are_raised_with_the_servers_code():
    try:
        enforced(api_key="lh_wrong").checkout([LicenseCheckoutArguments(product_name=THREE_DEE)],
                                              license_consumer_id=CONSUMER_ID)
        raise AssertionError("a wrong API key is refused")
    except ApiError as error:
        assert error.status_code == 401 and error.code == "notAuthorized", error
    try:
        enforced().checkout([LicenseCheckoutArguments(product_name=THREE_DEE)], license_consumer_id=uuid.uuid4())
        raise AssertionError("another consumer's id is refused")
    except ApiError as error:
        assert error.status_code == 403 and error.code == "notAuthorized", error


@scenario
def a_client_public_key_gets_a_jwe_only_it_can_open():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    headers = {
        "Authorization": f"Bearer {API_KEY}", "licenseConsumerId": str(CONSUMER_ID), "cliHwId": "jwe-box",
        "cliPublicKey": base64.urlsafe_b64encode(der).decode().rstrip("="),
    }
    response = requests.post(f"{URL}/licensing/actions/checkout", json=[{"productName": THREE_DEE}],
                             headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    [compact] = response.json()
    assert compact.count(".") == 4, "a compact JWE"
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    envelope = jwcrypto_jwe.JWE()
    envelope.deserialize(compact, key=jwcrypto_jwk.JWK.from_pem(pem))
    assert envelope.jose_header["alg"] == "RSA-OAEP" and envelope.jose_header["enc"] == "A256CBC-HS512"
    claims = verified(envelope.payload.decode())
    assert claims["status"] == "success" and claims["clientClaims"]["cliHwId"] == "jwe-box"
    enforced().release([LicenseReleaseArguments(lease_id=claims["leaseId"])], license_consumer_id=CONSUMER_ID)


for run in SCENARIOS:
    run()
    print(f"PASS {run.__name__}", flush=True)
print(f"verified {len(SEEN_TOKENS)} tokens through the JWKS", flush=True)
