"""Recognising credentials in config values, by name and by shape, so none lands where it is readable.

Job configs travel in ConfigMaps, plain env values sit in manifests, helm.args and tags become MLflow
params and tags: all readable by anyone who can read the namespace or the experiment. Credentials
belong in a Kubernetes Secret, referenced through `kubernetes_config.secret_env`. These checks err on
the side of refusing; a refused value is never echoed back in the error.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

# Words of a name (HF_TOKEN, db.password, --api-key, hfToken) that mark it as a credential.
_SECRET_WORDS = frozenset(
    {
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PWD",
        "SECRET",
        "SECRETS",
        "APIKEY",
        "CREDENTIAL",
        "CREDENTIALS",
        "PRIVATE",
        "AUTH",
        "PAT",
        "COOKIE",
        "SIGNATURE",
    }
)
# A glued name such as HFTOKEN or DBPASSWORD ends in one of these (TOKENIZERS_PARALLELISM does not).
_GLUED_ENDINGS = ("TOKEN", "PASSWORD", "PASSWD", "SECRET", "APIKEY", "CREDENTIALS")
# KEY alone is too common (SORT_KEY, KEYRING); after one of these it is a credential (AWS_ACCESS_KEY_ID).
_KEY_QUALIFIERS = frozenset(
    {"API", "ACCESS", "SECRET", "PRIVATE", "AUTH", "SIGNING", "ENCRYPTION", "MASTER", "SSH", "CLIENT", "SERVICE"}
)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# Query parameters that carry credentials in URLs (OAuth, signed URLs, API keys).
_SECRET_QUERY_PARAMETERS = frozenset({"key", "sig", "signature", "code", "x-amz-signature", "x-goog-signature"})
# An Authorization header, or a Bearer/Basic credential (a token-like word: long, with a digit or base64 mark).
_AUTH_SCHEME = re.compile(r"(?i:\bauthorization\s*:)|\b(?:Bearer|Basic)\s+(?=[\w.~+/=-]*[0-9=+/.])[\w.~+/=-]{12,}")
# Shapes of widely used tokens: Hugging Face, GitHub, OpenAI-style, AWS access key ids, Slack, GitLab, PEM.
_TOKEN_SHAPES = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_\w{20,}|\bsk-[A-Za-z0-9_-]{20,}"
    r"|\bAKIA[0-9A-Z]{16}\b|\bxox[abpsr]-[A-Za-z0-9-]{10,}|\bglpat-[A-Za-z0-9_-]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY"
)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{0,31}://\S+")  # a bounded scheme: linear on any input


def name_words(name: str) -> list[str]:
    """The words of a name, upper-cased: `hfToken` -> HF, TOKEN; `--api-key` -> API, KEY."""
    return [word.upper() for word in _WORDS.findall(name)]


def is_credential_name(name: str) -> bool:
    """Whether a variable, option, tag or parameter name says that its value is a credential."""
    words = name_words(name)
    if _SECRET_WORDS.intersection(words) or any(w.endswith(_GLUED_ENDINGS) for w in words):
        return True
    return any(word in ("KEY", "KEYS") and i > 0 and words[i - 1] in _KEY_QUALIFIERS for i, word in enumerate(words))


def credential_in_value(value: str) -> str | None:
    """What makes `value` look like it holds a credential (never the credential itself), or None."""
    if _AUTH_SCHEME.search(value):
        return "an HTTP authorization header or scheme"
    if _TOKEN_SHAPES.search(value):
        return "a token"
    for url in _URL.findall(value):
        problem = credential_in_url(url)
        if problem:
            return problem
    return None


def credential_in_url(url: str) -> str | None:
    """What makes `url` carry a credential: user info, a credential-named query parameter or a fragment token."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        netloc, parts = url.split("/", 3)[2] if url.count("/") >= 2 else "", None
    if "@" in netloc:
        return "a URL with user information (user:password@)"
    if parts is None:
        return None
    for text in (parts.query, parts.fragment):
        for name, _ in parse_qsl(text, keep_blank_values=True):
            if is_credential_name(name) or name.lower() in _SECRET_QUERY_PARAMETERS:
                return f"a URL with a {name!r} parameter"
    return None
