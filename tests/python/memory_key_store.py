"""A verification key store for the SDK suites that keeps the JWKS in memory (the SDK's default
writes it to the user's data directory)."""

from tenduke_scale.license_checkout import VerificationKeyStoreABC


class MemoryKeyStore(VerificationKeyStoreABC):
    """Keeps the JWKS in memory."""

    def __init__(self):
        self._keys = None

    def load(self):
        return self._keys

    def save(self, keys_as_json):
        self._keys = keys_as_json
