"""One redaction for everything the app writes where people read: logs, failure reasons,
journal and rollout records, operators' views.

:func:`redact` masks credentials inside free text; :func:`redact_value` walks dicts, lists and
tuples, redacts every string and masks the whole value of a key whose name looks secret
(:func:`is_secret_name`). Both are idempotent (redacting redacted text changes nothing) and
keep what an operator needs to diagnose: the scheme, host and user of a URL, the parameter
names, the ``dapi`` prefix of a token. Only the standard library is used, so the cold-start
path (``import function_app``) stays light (docs/architecture.md principle 9).

What is masked, and where its shape is documented:

- URL user-info passwords, ``scheme://user:***@host`` (RFC 3986 §3.2.1: user-info may carry
  ``user:password``, which the RFC deprecates precisely because it leaks), however malformed:
  invalid ``%`` escapes, an unencoded ``@`` or space;
- values of secret-looking parameters in query strings and fragments (``?password=``,
  ``&sig=`` of an Azure SAS URL, ``#access_token=`` of the OAuth implicit grant), in DSN and
  connection strings (libpq ``key=value`` DSNs, ADO.NET/Azure Storage ``Name=value;``, so
  ``AccountKey=`` and ``SharedAccessSignature=``), and in JSON text (``"password": "..."``);
- the credential of an ``Authorization`` header, whatever its scheme (RFC 9110 §11.6.2), and a
  bare ``Bearer <token>`` (RFC 6750 §2.1);
- Databricks personal access tokens, ``dapi`` followed by 32 hex digits (and an optional
  ``-N`` suffix), as Databricks issues them;
- JWT-shaped tokens, three base64url segments whose first two begin ``eyJ`` (a JSON object;
  RFC 7519 §3), the form of Microsoft Entra and Databricks OAuth access tokens;
- values known to be secret, passed as ``secrets`` (:func:`url_secrets` lists a URL's), wherever
  they or a run of at least four of their characters appear: a driver quotes the part of a URL
  it could not parse, and its parser cuts a password at other places than ours (libpq ends
  user-info at the first ``@`` or ``/``, ``urlsplit`` at the last ``@`` of the netloc).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import groupby
from typing import Any
from urllib.parse import unquote

MASK = "***"
"""What replaces a secret. Never a valid credential, and recognisably a redaction."""

# Fragments of a normalised name (lower case, letters and digits only) that make it a secret.
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "credential", "apikey", "accesskey", "accountkey",
                 "privatekey", "sharedkey", "signingkey", "masterkey", "clientkey", "sessionkey", "subscriptionkey",
                 "encryptionkey", "sharedaccesskey", "sharedaccesssignature", "authorization", "connectionstring")
# Last words that make a name secret ("access_token", "idToken", "DB_PWD"); as the last word
# only, since "token_type" and "max_tokens" are not secrets. A bare "key" is usually an
# identifier here (journal row keys, "primary_keys"), so it is not in this list.
_SECRET_LAST_WORDS = ("token", "pwd")
# Parameter names that are secret in query strings and connection strings only: there "key"
# is an API key (``?key=``) and "sig" the signature of an Azure SAS URL.
_SECRET_PARAMS = frozenset({"key", "sig", "sas", "signature", "pass", "auth"})

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=4096)  # field names repeat; this runs for every field logged or stored
def is_secret_name(name: str) -> bool:
    """True when a field, parameter or variable named ``name`` holds a secret.

    Recognises password/passwd/pwd, secret, token (``access_token``, ``idToken``), credential,
    the qualified keys (``api_key``, ``AccountKey``, ``x-api-key``, ``private_key``, ...) and
    ``Authorization``. A bare ``key`` or ``max_tokens`` is not secret: in this app they are
    identifiers and counts."""
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if not words:
        return False
    compact = "".join(words)
    if any(part in compact for part in _SECRET_PARTS):
        return True
    return words[-1].endswith(_SECRET_LAST_WORDS)


def _is_secret_param(name: str) -> bool:
    return is_secret_name(name) or name.lower() in _SECRET_PARAMS


# scheme://user:password@host — the greedy password part backtracks to the LAST '@' of the
# authority, which is where urlsplit ends user-info too (an unencoded '@' in a password). A
# password may hold unencoded spaces (libpq refuses them, quoting the password), never a line
# break; with spaces, the '@' that ends it must be followed by a host.
_URL_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#:@]*:)"
                           r"(?P<secret>[^\s/?#](?:[^\r\n/?#]*[^\s/?#])?(?=@[^\s@/?#'\"]+)|[^\s/?#]+(?=@))")
# name=value in query strings (?&#;), DSNs (space separated) and connection strings (';').
# The value is quoted (libpq allows single quotes) or runs to the next separator.
_PARAM = re.compile(
    r"(?P<head>(?:^|(?<=[\s?&#;,(\[{\"']))(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;#,'\")\]}]+)"
)
# "name": "value" in JSON text kept verbatim (request excerpts in the journal).
_JSON_PAIR = re.compile(r"(?P<head>\"(?P<name>[^\"\\]{1,100})\"\s*:\s*)(?P<secret>\"(?:[^\"\\]|\\.)*\")")
# Authorization: <scheme> <credentials>, also as a header dict's repr or JSON.
_AUTH_HEADER = re.compile(
    r"(?P<head>\b(?:Proxy-)?Authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?!\*\*\*)[A-Za-z][A-Za-z0-9_-]*[ \t]+)?)"
    r"(?P<secret>[^\s\"',;]+)",
    re.IGNORECASE,
)
# A bearer token anywhere ("Bearer token expired" is prose: tokens are at least 8 characters).
_BEARER = re.compile(r"(?P<head>\bBearer[ \t]+)(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)", re.IGNORECASE)
# A Databricks secret reference as served entities take it (SDK ``ServedEntityInput.environment_vars``:
# ``{{secrets/my_scope/my_key}}``; scope and key names are letters, digits, '-', '_' and '.', at
# most 128 characters) or an Azure app setting's Key Vault reference (Microsoft Learn, "Use Key Vault
# references as app settings in Azure App Service, Azure Functions, and Azure Logic Apps",
# https://learn.microsoft.com/en-us/azure/app-service/app-service-key-vault-references).
SECRET_REFERENCE = re.compile(r"^\{\{secrets/[A-Za-z0-9_.\-]{1,128}/[A-Za-z0-9_.\-]{1,128}\}\}$")
_KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\([^()]*\)$")
_DATABRICKS_PAT = re.compile(r"\bdapi[0-9a-f]{32}(?:-\d+)?\b")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


# Every pattern above needs one of these: most text (ids, states, versions) skips the rest.
_MAYBE = re.compile(r"[=:]|bearer|dapi|eyJ", re.IGNORECASE)


def _mask_secret(match: re.Match[str]) -> str:
    return match.group("head") + MASK


def _masker(is_secret: Callable[[str], bool]) -> Callable[[re.Match[str]], str]:
    """A substitution that masks the (possibly quoted) value of a pair whose name is secret."""

    def mask(match: re.Match[str]) -> str:
        if not is_secret(match.group("name")):
            return match.group(0)
        secret = match.group("secret")
        quote = secret[0] if secret[:1] in ("'", '"') else ""
        return f"{match.group('head')}{quote}{MASK}{quote}"

    return mask


_mask_json_field = _masker(is_secret_name)
_mask_param = _masker(_is_secret_param)


# How many characters of a known secret in a row count as an echo of it.
_ECHO = 4


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets ``url`` carries, raw and percent-decoded: the user-info password and the
    values of secret-named query and fragment parameters (``?password=``, ``&sig=``).

    The password is taken as everything between the user-info's first ``:`` and the URL's
    last ``@``: a password with an unencoded ``@``, ``/``, ``?`` or space is cut differently by
    each parser, and this span holds every cut."""
    _, scheme_sep, rest = url.partition("://")
    if not scheme_sep:
        return ()
    found = []
    userinfo, at, after = rest.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    for pair in re.split(r"[?&#;]", after if at else rest)[1:]:
        name, eq, value = pair.partition("=")
        if eq and _is_secret_param(name):
            found.append(value)
    return tuple(dict.fromkeys(v for raw in found for v in (raw, unquote(raw)) if v))


def _mask_known(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every run of ``_ECHO`` characters (or a whole shorter secret) that also
    occurs in one of ``secrets`` masked, overlapping runs as one mask."""
    hidden = [False] * len(text)
    for secret in secrets:
        width = min(_ECHO, len(secret))
        if not width:
            continue
        grams = {secret[i:i + width] for i in range(len(secret) - width + 1)}
        for i in range(len(text) - width + 1):
            if text[i:i + width] in grams:
                hidden[i:i + width] = [True] * width
    if not any(hidden):
        return text
    out, at = [], 0
    for masked, run in groupby(hidden):
        size = len(list(run))
        out.append(MASK if masked else text[at:at + size])
        at += size
    return "".join(out)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with every credential it carries replaced by ``***`` (see the module doc for
    what is recognised), and every echo of the values in ``secrets``. Anything that is not a
    ``str`` is returned unchanged."""
    if not isinstance(text, str):
        return text
    if secrets:
        text = _mask_known(text, secrets)
    if not _MAYBE.search(text):
        return text
    text = _URL_USERINFO.sub(_mask_secret, text)
    text = _AUTH_HEADER.sub(lambda m: m.group(0) if m.group("secret") == MASK else _mask_secret(m), text)
    text = _BEARER.sub(lambda m: m.group(0) if m.group("secret") == MASK else _mask_secret(m), text)
    text = _JSON_PAIR.sub(_mask_json_field, text)
    text = _PARAM.sub(_mask_param, text)
    text = _DATABRICKS_PAT.sub("dapi" + MASK, text)
    return _JWT.sub(MASK, text)


# How much of a body is redacted before an excerpt is cut from it, so that a credential the cut
# would split is masked whole (a JWT or a SAS URL is well under this).
_EXCERPT_WINDOW = 8192


def excerpt(body: bytes, limit: int) -> str:
    """The first ``limit`` characters of ``body`` (UTF-8, undecodable bytes replaced), redacted
    before they are cut: a credential across the cut is masked whole, not left half matched."""
    return redact(body[:_EXCERPT_WINDOW].decode("utf-8", errors="replace"))[:limit]


def contains_secret(text: str) -> bool:
    """True when :func:`redact` would mask something in ``text``."""
    return redact(text) != text


def is_secret_reference(value: str) -> bool:
    """True when ``value`` names a secret instead of holding it: a Databricks secret reference
    ``{{secrets/<scope>/<key>}}`` or a Key Vault reference ``@Microsoft.KeyVault(...)``."""
    value = value.strip()
    return bool(SECRET_REFERENCE.match(value) or _KEY_VAULT_REFERENCE.match(value))


def _mask_field(name: Any, value: Any) -> Any:
    if value is None or not isinstance(name, str) or not is_secret_name(name):
        return redact_value(value)
    # A reference is what a restored endpoint config must carry back; it reveals nothing.
    return value if isinstance(value, str) and is_secret_reference(value) else MASK


def redact_value(obj: Any) -> Any:
    """A copy of ``obj`` safe to store or show: strings redacted (:func:`redact`), dict values
    under a secret-looking key (:func:`is_secret_name`) replaced by ``***`` whatever their type
    (secret references excepted, :func:`is_secret_reference`), dicts, lists and tuples walked
    recursively. Dict keys themselves are kept; other values (numbers, booleans, None) pass
    through."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: _mask_field(k, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_value(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact_value(v) for v in obj)
    return obj
