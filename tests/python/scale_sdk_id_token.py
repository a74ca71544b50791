"""The official 10Duke Scale Python SDK (tenduke-scale 2.3.0), unchanged, signing in with an
identity provider's token through its ID-token authorization (`Authorization: IdToken <JWT>`)
instead of an API key: checkout, heartbeat and release of a license of the consumer the token
names, who did not exist before its first request; its tokens carry the consumer claims
(e-mail, connected identity).

Run by tests/http_identity.rs: `python scale_sdk_id_token.py <server url> <admin token> <id token>`.
Prints `PASS <scenario>` and exits non-zero on a failure.
"""

import sys

import requests
from tenduke_core.auth.auth_provider import IdTokenAuth
from tenduke_scale.license_checkout import (
    ClientDetails,
    EnforcedLicenseCheckoutClient,
    LicenseCheckoutArguments,
    LicenseHeartbeatArguments,
    LicenseToken,
)

from memory_key_store import MemoryKeyStore

URL, ADMIN_TOKEN, ID_TOKEN = sys.argv[1], sys.argv[2], sys.argv[3]


session = requests.Session()
session.auth = IdTokenAuth(lambda: ID_TOKEN)
client = EnforcedLicenseCheckoutClient(URL, session, verification_key_store=MemoryKeyStore())

granted = client.checkout([LicenseCheckoutArguments(product_name="Cad")], client_details=ClientDetails(hardware_id="hw-1"))[0]
assert granted.status == "success", granted.claims

consumers = requests.get(
    f"{URL}/admin/consumers", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
).json()["items"]
alice = [c for c in consumers if c["email"] == "alice@acme.example"]
assert len(alice) == 1, consumers
assert granted.claims["licenseConsumerId"] == alice[0]["id"], granted.claims
assert granted.claims["licenseConsumerEmail"] == "alice@acme.example", granted.claims
assert granted.claims["licenseConsumerConnectedIdentityId"] == "alice", granted.claims
assert "licenseConsumerExternalReference" not in granted.claims, granted.claims

renewed = client.heartbeat([LicenseHeartbeatArguments(lease_id=granted.lease_id)])[0]
assert renewed.status == "success" and renewed.old_lease_id == granted.lease_id, renewed.claims
released = client.release(LicenseToken.make_release_arguments([renewed]))
assert len(released) == 1 and released[0].released, released
print("PASS the_sdk_signs_in_with_an_id_token")
