"""Likely secrets in a line a finding quotes: ``mysql -uroot -pS3cret``, ``curl -u
user:pass``, ``sshpass -p``, ``export AWS_SECRET_ACCESS_KEY=...``, ``https://user:pass@``.

A history file or start-up file is copied byte-exact (it is the evidence, and hashes
prove it); the journal, the closing box and the report are read by many more people, so a
line quoted there shows ``[REDACTED]`` where a password or token was typed, and the
finding says how many were replaced. The rules judge the line as typed: a download run
with a password is still a download run. The patterns err towards hiding: hiding a
harmless word costs the reader one look at the artifact; showing a password cannot be
undone. Only the value is replaced, never the option or variable name, so the reader
still sees what was done."""

from __future__ import annotations

import re
from typing import Any

MARK = "[REDACTED]"
NOTE = "likely secret(s) replaced by [REDACTED]; the artifact holds the line as typed"
_NOT_DONE = r"(?!\[REDACTED\])"
# A value: quoted, or up to the next blank, quote or separator.
_VALUE = rf"""{_NOT_DONE}(?:"[^"]*"|'[^']*'|[^\s"';|&]+)"""
_SECRET_WORD = (
    r"[A-Za-z0-9_]*(?:PASS(?:WORD|WD)?|PWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|"
    r"CREDENTIALS?|AUTH|SESSION_?KEY|CLIENT_?KEY)[A-Za-z0-9_]*"
)
# Each pattern: group 1 (the option or name) is kept, group 2 (the value) hidden.
_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # URL credentials: scheme://user:pass@host (the user is kept)
        rf"([a-z][a-z0-9+.-]*://[^\s:/@]*:)({_NOT_DONE}[^\s@/]+)(?=@)",
        # NAME=value where the name says secret (export, env, inline, config lines)
        rf"(\b{_SECRET_WORD}\s*=\s*)({_VALUE})",
        # --password=x, --password x, --token x, --api-key x, --secret x, ...
        rf"(--?(?:[a-z0-9]+-)*(?:password|passwd|pass|pwd|token|secret|api-?key|access-key|"
        rf"secret-key|client-secret|auth-token)(?:=|\s+))({_VALUE})",
        # mysql/mariadb -pSECRET (no blank: a blank means "ask me")
        rf"(\b(?:mysql\w*|mariadb\w*)\b[^|;&]*?\s(?-i:-p))({_NOT_DONE}[^\s\"';|&]+)",
        # curl -u user:pass, -su user:pass, --user user:pass (the user is kept)
        rf"(\s(?:-[a-z]*u|--user|--proxy-user)\s*['\"]?[^\s:'\"]*:)({_NOT_DONE}[^\s'\"]+)",
        # docker login -p x, sshpass -p x, redis-cli -a x, ldapsearch -w x, smbclient -U u%p
        rf"(\b(?:docker|podman|buildah|skopeo|helm|oc|nerdctl)\b[^|;&]*?\blogin\b[^|;&]*?\s-p\s*)"
        rf"({_VALUE})",
        rf"(\bsshpass\b[^|;&]*?\s-p\s*)({_VALUE})",
        rf"(\bredis-cli\b[^|;&]*?\s-a\s*)({_VALUE})",
        rf"(\bldap\w+\b[^|;&]*?\s-w\s*)({_VALUE})",
        rf"(\b(?:smbclient|rpcclient|smbmap|crackmapexec|nxc|impacket-\w+)\b[^|;&]*?"
        rf"(?:\s-U\s*|\s)['\"]?[^\s%'\"/]*[%:])({_NOT_DONE}[^\s'\"@]+)",
        # openssl -passin pass:x, -passout env:X (-pass x is the rule above)
        rf"(\s-pass(?:in|out)?\s+(?:pass|env):)({_VALUE})",
        # HTTP headers: Authorization: Bearer x, X-Api-Key: x, Cookie: x
        rf"((?:authorization|proxy-authorization)\s*:\s*(?:(?:bearer|basic|token|digest)\s+)?)"
        rf"({_NOT_DONE}(?!(?:bearer|basic|token|digest)\b)[^\s\"']+)",
        rf"((?:x-api-key|x-auth-token|private-token|cookie)\s*:\s*)({_NOT_DONE}[^\s\"']+)",
        # echo 'user:pass' | chpasswd, echo pass | passwd --stdin
        rf"(\becho\s+(?:-n\s+)?['\"]?[^\s:'\"]+:)({_NOT_DONE}[^\s'\"|]+)(?=['\"]?\s*\|\s*chpasswd)",
        rf"(\becho\s+(?:-n\s+)?)({_VALUE})(?=\s*\|\s*(?:sudo\s+(?:-S\s+)?)?(?:passwd|sudo\s+-S))",
    )
)
# Tokens recognisable on their own, wherever they appear.
_TOKENS = re.compile(
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_\w{40,}\b"
    r"|\bglpat-[\w-]{20,}\b|\bxox[abposr]-[\w-]{10,}\b|\bsk_(?:live|test)_\w{16,}\b"
    r"|\bsk-[A-Za-z0-9_-]{32,}\b|\bAIza[\w-]{35}\b"
    r"|\beyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}"  # a JSON web token
)


def redact(text: str) -> tuple[str, int]:
    """``text`` with each likely secret value replaced by ``[REDACTED]``, and how many
    were. Idempotent: a redacted line comes back unchanged, with 0."""
    count = 0

    def hide(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return m.group(1) + MARK

    for pattern in _PATTERNS:
        text = pattern.sub(hide, text)

    def hide_token(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return MARK

    return _TOKENS.sub(hide_token, text), count


def redact_fields(fields: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A copy of ``fields`` with every text value (and every text in a list) redacted,
    and how many secrets were replaced in all."""
    total = 0
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str):
            value, n = redact(value)
            total += n
        elif isinstance(value, list) and any(isinstance(v, str) for v in value):
            items = []
            for v in value:
                if isinstance(v, str):
                    v, n = redact(v)
                    total += n
                items.append(v)
            value = items
        out[key] = value
    return out, total
