"""The trust layer: canonical records, the hash-chained custody journal, signing and
verification. Imports only the standard library, ``cryptography`` and ``rfc8785`` so the
lab can audit it on its own."""
