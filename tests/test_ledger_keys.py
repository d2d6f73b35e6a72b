"""The ledger's default key is exactly `json.dumps(params, sort_keys=True, separators=(",", ":"))`.

`canonical_key` makes its C encoder once instead of once per call (see `_made_once`): these
tests hold it equal to `json.dumps` on any JSON value (tuples, non-ASCII text, NaN and
infinities included), and check that params JSON cannot carry raise an `Exception`, which the
ledger turns into an error naming the item.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcmodel import _ledger_keys
from pcmodel._ledger_keys import canonical_key

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


def _dumps(params: Any) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


@given(values)
def test_the_key_is_the_canonical_json(params: Any) -> None:
    assert canonical_key(params) == _dumps(params)


@given(st.dictionaries(st.integers(), scalars, max_size=5))
def test_int_keys_are_keyed_as_json_writes_them(params: dict[int, Any]) -> None:
    assert canonical_key(params) == _dumps(params)


def test_the_special_floats_are_keyed_as_json_writes_them() -> None:
    for number in (math.nan, math.inf, -math.inf, -0.0, 1e300, 5e-324):
        assert canonical_key([number]) == _dumps([number])


@pytest.mark.parametrize(
    "params",
    [{1, 2}, {"a": object()}, {1: "a", "b": 2}, b"bytes", {"n": complex(1, 2)}],
)
def test_params_json_cannot_carry_raise_an_exception(params: Any) -> None:
    with pytest.raises(TypeError):
        _dumps(params)
    with pytest.raises(TypeError):
        canonical_key(params)


def test_a_circular_structure_raises_an_exception_not_a_crash() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises((RecursionError, ValueError)):
        canonical_key(loop)
    assert canonical_key([1, [2]]) == "[1,[2]]"  # the encoder is not left in a bad state


def test_without_the_c_encoder_the_plain_encoder_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    plain = _ledger_keys._made_once()
    assert plain({"b": 1, "a": (2,)}) == '{"a":[2],"b":1}'


@given(st.text())
def test_storable_text_is_what_the_file_can_hold_and_unchanged_when_it_could_already(text: str) -> None:
    stored = _ledger_keys.storable(text)
    stored.encode("utf-8")  # never raises
    assert _ledger_keys.unstorable(stored) is None
    if _ledger_keys.unstorable(text) is None:
        assert stored == text
    else:
        assert stored == text.encode("utf-8", "backslashreplace").decode("utf-8")


def test_a_lone_surrogate_is_found_at_its_place_and_written_out() -> None:
    assert _ledger_keys.unstorable("car\udcff") == 3
    assert _ledger_keys.unstorable("h\u00e9llo \U0001f600") is None
    assert _ledger_keys.storable("car\udcff \u00e9") == "car\\udcff \u00e9"
    assert _ledger_keys.error_text(OSError("no file car\udcff")) == ("OSError", "no file car\\udcff")
