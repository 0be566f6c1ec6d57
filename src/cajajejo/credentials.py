"""Recognising credentials in config values, by name and by shape, so none lands where it is readable.

Job configs travel in ConfigMaps, plain env values sit in manifests, helm.args and tags become MLflow
params and tags: all readable by anyone who can read the namespace or the experiment. Credentials
belong in a Kubernetes Secret, referenced through `kubernetes_config.secret_env`. These checks err on
the side of refusing; a refused value is never echoed back in the error.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from cajajejo.errors import Problem

# Words of a name (HF_TOKEN, db.password, --api-key, hfToken) that mark it as a credential anywhere in it.
_SECRET_WORDS = frozenset(
    {"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "SECRETS", "APIKEY", "CREDENTIAL", "CREDENTIALS", "COOKIE"}
)
# Words that mark a credential only as the last word (DB_PASS, HF_AUTH, GITHUB_PAT, HF_TOKEN, OPENAI_KEY),
# since elsewhere they are ordinary (PASS_THROUGH, AUTH_METHOD, TOKEN_COUNT, KEYRING, PATH).
_SECRET_LAST_WORDS = frozenset({"TOKEN", "PASS", "PWD", "AUTH", "PAT", "KEY", "KEYS"})
# A glued name such as HFTOKEN or DBPASSWORD ends in one of these (TOKENIZERS_PARALLELISM does not).
_GLUED_ENDINGS = ("TOKEN", "PASSWORD", "PASSWD", "SECRET", "APIKEY", "CREDENTIALS")
# KEY elsewhere than last is a credential after one of these (AWS_ACCESS_KEY_ID, SSH_PRIVATE_KEY_PATH is not).
_KEY_QUALIFIERS = frozenset({"API", "ACCESS", "SECRET", "AUTH", "SIGNING", "ENCRYPTION", "MASTER", "ACCOUNT"})
# Names that end like a credential but hold none (tokenizer settings, paths to credential files).
_NOT_CREDENTIALS = frozenset(
    {
        "PAD_TOKEN",
        "EOS_TOKEN",
        "BOS_TOKEN",
        "UNK_TOKEN",
        "SEP_TOKEN",
        "CLS_TOKEN",
        "MASK_TOKEN",
        "SORT_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",  # the path of a key file, mounted from a Secret
    }
)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# Query parameters that carry credentials in URLs (signed URLs); `key=`/`code=` are too common to refuse,
# and API keys passed that way have token shapes of their own (below).
_SECRET_QUERY_PARAMETERS = frozenset({"sig", "signature", "x-amz-signature", "x-goog-signature", "x-amz-credential"})
# An Authorization header, or a Bearer/Basic credential (a token-like word: long, with a digit or base64 mark).
_AUTH_SCHEME = re.compile(r"(?i:\bauthorization\s*:)|\b(?:Bearer|Basic)\s+(?=[\w.~+/=-]*[0-9=+/.])[\w.~+/=-]{12,}")
# Shapes of widely used tokens: Hugging Face, GitHub, OpenAI-style, AWS access key ids, Slack, GitLab,
# Google API keys, JWTs, PEM private keys, and password fields of connection strings.
_TOKEN_SHAPES = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_\w{20,}|\bsk-[A-Za-z0-9_-]{20,}"
    r"|\bAKIA[0-9A-Z]{16}\b|\bxox[abpsr]-[A-Za-z0-9-]{10,}|\bglpat-[A-Za-z0-9_-]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY"
    r"|\bAIza[0-9A-Za-z_-]{35}|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."
    r"|(?i:\b(?:password|pwd|accountkey|sharedaccesskey|sharedaccesssignature)\s*=\s*[^;\s]+)"
)
# user:password@ in a URL, with or without a scheme (postgres://u:pw@h, u:pw@db:5432/x).
_USERINFO_PASSWORD = re.compile(r"(?:^|[\s/\"'=])[^\s/:@\"']{1,64}:[^\s/@\"']{1,256}@[\w.\[-]")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{0,31}://\S+")  # a bounded scheme: linear on any input


def name_words(name: str) -> list[str]:
    """The words of a name, upper-cased: `hfToken` -> HF, TOKEN; `--api-key` -> API, KEY."""
    return [word.upper() for word in _WORDS.findall(name)]


def is_credential_name(name: str) -> bool:
    """Whether a variable, option, tag or parameter name says that its value is a credential."""
    words = name_words(name)
    if not words or "_".join(words) in _NOT_CREDENTIALS:
        return False
    if _SECRET_WORDS.intersection(words) or words[-1] in _SECRET_LAST_WORDS:
        return True
    if any(word.endswith(_GLUED_ENDINGS) and word not in _GLUED_ENDINGS for word in words):
        return True
    return any(word in ("KEY", "KEYS") and i > 0 and words[i - 1] in _KEY_QUALIFIERS for i, word in enumerate(words))


def credential_in_value(value: str) -> str | None:
    """What makes `value` look like it holds a credential (never the credential itself), or None."""
    if _AUTH_SCHEME.search(value):
        return "an HTTP authorization header or scheme"
    if _TOKEN_SHAPES.search(value):
        return "a token or password"
    if _USERINFO_PASSWORD.search(value):
        return "a password in user:password@host"
    for url in _URL.findall(value):
        problem = credential_in_url(url)
        if problem:
            return problem
    return None


def credential_in_url(url: str) -> str | None:
    """What makes `url` carry a credential: a password in its user info, or a credential-named parameter."""
    if _USERINFO_PASSWORD.search(" " + url.split("://", 1)[-1].split("/", 1)[0]):
        return "a URL with a password (user:password@)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    for text in (parts.query, parts.fragment):
        for name, _ in parse_qsl(text, keep_blank_values=True):
            lowered = name.lower()
            if (is_credential_name(name) and lowered not in ("key", "keys")) or lowered in _SECRET_QUERY_PARAMETERS:
                return "a URL with a credential parameter"
    return None


def credential_lines(text: str, source: str) -> list[Problem]:
    """A problem for every line of an input file that looks like it holds a credential.

    Job inputs travel byte for byte in a ConfigMap that anyone who can read the namespace can read:
    a token in a comment or in a field without a rule of its own leaks as surely as one in `env`.
    """
    return [
        Problem(
            source,
            f"looks like it holds a credential ({what}); this file travels in a ConfigMap readable by the "
            "namespace: remove it and give credentials through kubernetes_config.secret_env",
            line=number,
        )
        for number, line in enumerate(text.splitlines(), start=1)
        if (what := credential_in_value(line))
    ]
