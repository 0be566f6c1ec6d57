"""Kubernetes value rules (names, labels, quantities) shared by config validation and manifest checks.

The rules follow the API server's own validation (k8s.io/apimachinery validation and resource.Quantity),
so a value accepted here is accepted by the cluster, and a typo is caught before anything is sent.
"""

from __future__ import annotations

import re
from decimal import Decimal

DNS1123_LABEL_MAX = 63
MAX_CONFIGMAP_BYTES = 1024 * 1024  # data and binaryData together
MAX_ANNOTATION_BYTES = 256 * 1024  # all annotations of one object together
MAX_OBJECT_BYTES = 1_572_864  # what the API server's store (etcd's default request limit) takes per object
DNS1123_SUBDOMAIN_MAX = 253

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")

# resource.Quantity: a signed decimal number followed by a binary-SI, decimal-SI or exponent suffix.
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
_SUFFIX_FACTOR = {
    None: Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def configmap_data_size(data: dict[str, str]) -> int:
    """The bytes a ConfigMap's data counts against MAX_CONFIGMAP_BYTES: its keys and values."""
    return sum(len(str(key).encode()) + len(str(value).encode()) for key, value in data.items())


def dns1123_label_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label (namespace, job name), or None when it is one."""
    if len(value) > DNS1123_LABEL_MAX:
        return f"is {len(value)} characters long; at most {DNS1123_LABEL_MAX} are allowed"
    if not _DNS1123_LABEL.fullmatch(value):
        return "must be lower-case letters, digits and '-', starting and ending with a letter or digit"
    return None


def dns1123_subdomain_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 subdomain (ConfigMap, Secret, StorageClass names), or None."""
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"is {len(value)} characters long; at most {DNS1123_SUBDOMAIN_MAX} are allowed"
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        return "must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
    return None


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label or annotation key (`[prefix/]name`), or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or dns1123_subdomain_problem(prefix)):
        return "has a prefix before '/' that is not a DNS subdomain (e.g. example.com/team)"
    if len(name) > DNS1123_LABEL_MAX or not _QUALIFIED_NAME_PART.fullmatch(name):
        return (
            "must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or"
            " digit, optionally after a 'domain/' prefix"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None."""
    if value and (len(value) > DNS1123_LABEL_MAX or not _QUALIFIED_NAME_PART.fullmatch(value)):
        return (
            "must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def env_var_name_problem(name: str) -> str | None:
    """Why `name` is not a valid container environment variable name, or None."""
    if not _ENV_VAR_NAME.fullmatch(name):
        return "must consist of letters, digits, '_', '-' or '.', and must not start with a digit"
    return None


def config_key_problem(key: str) -> str | None:
    """Why `key` is not a valid ConfigMap data key or Secret key, or None."""
    if len(key) > DNS1123_SUBDOMAIN_MAX or not _CONFIG_KEY.fullmatch(key) or key in (".", ".."):
        return "must be letters, digits, '-', '_' or '.' (and not '.' or '..')"
    return None


def parse_quantity(value: str) -> Decimal | None:
    """The numeric value of a Kubernetes quantity such as '16Gi', '500m' or '1e3', or None if malformed."""
    match = _QUANTITY.fullmatch(value)
    if match is None:
        return None
    try:
        return Decimal(match["number"]) * _suffix_factor(match["suffix"])
    except ArithmeticError:  # an exponent beyond what any cluster accepts, e.g. '1e9999999'
        return None


def _suffix_factor(suffix: str | None) -> Decimal:
    if suffix in _SUFFIX_FACTOR:  # the SI suffixes, 'Ei' (exbi) and a lone 'E' (exa) included
        return _SUFFIX_FACTOR[suffix]
    assert suffix is not None, "a missing suffix is in the table"
    assert suffix[0] in "eE", suffix  # the regex allows nothing else
    return Decimal(10) ** int(suffix[1:])  # a decimal exponent: '1e3', '5E-2'
