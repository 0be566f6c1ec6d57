from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cajajejo import kube


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", Decimal(4)),
        ("500m", Decimal("0.5")),
        ("16Gi", Decimal(16 * 2**30)),
        ("1.5G", Decimal("1.5e9")),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("2E", Decimal("2e18")),
        (".5", Decimal("0.5")),
    ],
)
def test_quantities_parse_to_their_value(text: str, value: Decimal) -> None:
    assert kube.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "16 Gi", "16GB", "Gi", "1.2.3", "4cores", "0x10", "1e", "1e99999999999"])
def test_malformed_quantities_are_rejected(text: str) -> None:
    assert kube.parse_quantity(text) is None


@given(st.text())
def test_parse_quantity_never_raises(text: str) -> None:
    kube.parse_quantity(text)


@pytest.mark.parametrize("name", ["eval-a-b", "a", "a" * 63, "x1-2"])
def test_valid_labels(name: str) -> None:
    assert kube.dns1123_label_problem(name) is None


@pytest.mark.parametrize("name", ["Eval", "-a", "a-", "a" * 64, "a.b", "a_b", ""])
def test_invalid_labels(name: str) -> None:
    assert kube.dns1123_label_problem(name) is not None


def test_label_keys_and_values() -> None:
    assert kube.label_key_problem("cloud.google.com/gke-spot") is None
    assert kube.label_key_problem("app") is None
    assert kube.label_key_problem("Bad Key") is not None
    assert kube.label_key_problem("/x") is not None
    assert kube.label_key_problem("UPPER.example/x") is not None
    assert kube.label_value_problem("") is None
    assert kube.label_value_problem("true") is None
    assert kube.label_value_problem("no spaces") is not None
    assert kube.env_var_name_problem("HF_HOME") is None
    assert kube.env_var_name_problem("1X") is not None
    assert kube.config_key_problem("eval_config.yml") is None
    assert kube.config_key_problem("..") is not None
