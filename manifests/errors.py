"""One small error hierarchy for the trust layer, so callers catch ``ManifestError`` once."""


class ManifestError(Exception):
    """Base class: something about evidence, keys or the journal is wrong."""


class CanonicalError(ManifestError):
    """A journal line is not canonical JSON (RFC 8785) or has duplicate keys."""


class KeyLoadError(ManifestError):
    """A signing key could not be loaded (wrong passphrase, not Ed25519, unreadable)."""


class SignatureError(ManifestError):
    """A signature does not verify against the expected key."""


class JournalChangedError(ManifestError):
    """A journal read again, or about to be appended to, is not the one that was verified."""


class NotEvidenceError(ManifestError):
    """The directory given is not an evidence directory at all."""


class EvidenceLostError(ManifestError):
    """The evidence directory vanished under the run (deleted, replaced, drive pulled).

    Nothing is recreated: a recreated tree would hold orphan files and no journal."""

    exit_code = 3

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"the evidence directory {location} was lost: {reason}")
        self.location = location
        self.reason = reason
