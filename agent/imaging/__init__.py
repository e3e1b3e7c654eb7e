"""Forensic disk images: ``preserve image DEVICE`` and ``preserve --image DEVICE``.

Split by concern: ``device`` (what the kernel says about the source, recorded before a
byte is read), ``partitions`` (the MBR or GPT on it), ``reader`` (read-only reads, bad
sectors retried once at sector granularity and zero-filled), ``pieces`` (the SHA-256 of
the whole image and of each fixed piece), ``pipeline`` (reading, hashing and writing
overlapped in threads over a bounded pool of buffers), ``output`` (the formats behind
``ImageOutput``) and ``stage`` (the collector that journals all of it). Every byte goes
through the evidence writer, so a local drive and an SFTP server work the same."""
