"""One small error hierarchy for the trust layer, so callers catch ``ManifestError`` once."""


class ManifestError(Exception):
    """Base class: something about evidence, keys or the journal is wrong."""


class CanonicalError(ManifestError):
    """A journal line is not canonical JSON (RFC 8785) or has duplicate keys."""


class KeyLoadError(ManifestError):
    """A signing key could not be loaded (wrong passphrase, not Ed25519, unreadable)."""


class SignatureError(ManifestError):
    """A signature does not verify against the expected key."""


class NotEvidenceError(ManifestError):
    """The directory given is not an evidence directory at all."""
