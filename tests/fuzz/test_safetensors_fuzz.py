"""Fuzz the strict safetensors parser and the header-level adapter checks.

``workers.safetensors_io.read_header`` may only ever return a header or raise its own
``SafetensorsError`` (with a stable ``code``): never IndexError, KeyError, TypeError,
struct.error, MemoryError or a bare ValueError. It must never ask its reader for more
than the header limit (a declared length of 2**64-1 allocates nothing), and nothing on
these paths may unpickle. ``workers.validate.check_header_compat`` goes further: bad
input never raises at all, it becomes an ``invalid`` report.

Budget: a fixed ``max_examples`` per property, derandomized.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import pickle
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.factories import TINY_BASE, adapter_files
from workers.safetensors_io import (
    DTYPE_SIZES,
    SafetensorsError,
    bytes_reader,
    parse_header,
    read_header,
)
from workers.validate import WeightFile, check_header_compat

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SMALL_HEADER_LIMIT = 64 * 1024

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8,
)
dtypes = st.one_of(
    st.sampled_from(sorted(DTYPE_SIZES)),
    st.sampled_from(["f32", "F4", "Q4_0", "", "F32 ", "object", "O"]),
    json_values,  # a list or dict here used to escape as TypeError (unhashable)
)
shapes = st.one_of(
    st.lists(st.integers(min_value=0, max_value=6), max_size=3),
    st.lists(st.integers(min_value=-(2**64), max_value=2**64), max_size=4),
    st.lists(st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=3))),
    json_values,
)
offsets = st.one_of(
    st.lists(st.integers(min_value=0, max_value=256), min_size=2, max_size=2),
    st.lists(st.integers(min_value=-(2**65), max_value=2**65), max_size=3),
    json_values,
)
tensor_names = st.one_of(
    st.sampled_from(
        [
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
            "../x",
            "a/b",
            "",
            "a\x00b",
            "__metadata__",
        ]
    ),
    st.text(max_size=20),
)
entries = st.one_of(
    st.fixed_dictionaries(
        {"dtype": dtypes, "shape": shapes, "data_offsets": offsets},
        optional={"extra": json_values},
    ),
    st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets"]), json_values),
    json_values,
)
headers = st.one_of(
    st.dictionaries(tensor_names, entries, max_size=4),
    st.dictionaries(
        tensor_names,
        entries,
        max_size=3,
    ).map(lambda d: {"__metadata__": {"format": "pt"}, **d}),
    st.fixed_dictionaries({"__metadata__": json_values}),
    json_values,  # non-dict JSON
)


def encode(header_bytes: bytes, data: bytes, declared: int | None = None) -> bytes:
    length = len(header_bytes) if declared is None else declared
    return struct.pack("<Q", length) + header_bytes + data


def guarded_reader(data: bytes, limit: int) -> Callable[[int, int], bytes]:
    """A reader that refuses to be asked for more than ``limit`` bytes at once."""
    inner = bytes_reader(data)

    def read(offset: int, length: int) -> bytes:
        assert 0 <= length <= limit + 8, f"the parser asked for {length} bytes"
        return inner(offset, length)

    return read


def parse(data: bytes, *, limit: int = SMALL_HEADER_LIMIT) -> None:
    try:
        read_header(guarded_reader(data, limit), len(data), max_header_bytes=limit)
    except SafetensorsError as exc:
        error = exc
    else:
        return
    assert type(error) is SafetensorsError
    assert isinstance(error.code, str)
    assert error.code


@pytest.fixture(autouse=True)
def _no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to unpickle during these tests fails them."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("something tried to unpickle an upload")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    try:
        import torch

        monkeypatch.setattr(torch, "load", refuse)
    except ImportError:  # pragma: no cover - the web role has no torch
        pass
    return


@FUZZ
@given(st.binary(max_size=256))
@pytest.mark.timeout(120)
def test_arbitrary_bytes(data: bytes) -> None:
    parse(data)


@FUZZ
@given(
    header=st.binary(max_size=128),
    data=st.binary(max_size=64),
    declared=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
)
@pytest.mark.timeout(120)
def test_corrupted_length_prefix(header: bytes, data: bytes, declared: int | None) -> None:
    parse(encode(header, data, declared))


@pytest.mark.parametrize(
    "declared", [2**64 - 1, 2**63, 2**40, 16 * 1024 * 1024 + 1, SMALL_HEADER_LIMIT + 1]
)
@pytest.mark.timeout(30)
def test_huge_declared_length_is_refused_without_allocating(declared: int) -> None:
    data = encode(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4, declared)
    with pytest.raises(SafetensorsError) as info:
        read_header(guarded_reader(data, SMALL_HEADER_LIMIT), len(data), max_header_bytes=10**6)
    assert info.value.code in ("header_too_large", "truncated")


@pytest.mark.timeout(30)
def test_huge_declared_tensor_is_refused_without_allocating() -> None:
    header = json.dumps(
        {"a": {"dtype": "F64", "shape": [2**39, 2**39], "data_offsets": [0, 2**81]}}
    ).encode()
    with pytest.raises(SafetensorsError) as info:
        read_header(guarded_reader(encode(header, b""), 1024), 8 + len(header))
    assert info.value.code == "bad_offsets"


@FUZZ
@given(header=headers, data=st.binary(max_size=96), pad=st.sampled_from([b"", b" ", b"\n  "]))
@pytest.mark.timeout(120)
def test_malformed_json_headers(header: Any, data: bytes, pad: bytes) -> None:
    parse(encode(json.dumps(header).encode() + pad, data))


@FUZZ
@given(
    text=st.text(max_size=64).map(lambda s: "{" + s),
    depth=st.integers(min_value=0, max_value=5000),
)
@pytest.mark.timeout(120)
def test_broken_and_deep_json(text: str, depth: int) -> None:
    deep = '{"a":' + "[" * depth + "]" * depth + "}"
    for candidate in (text, deep, text + deep):
        raw = candidate.encode("utf-8", "surrogatepass")
        parse(encode(raw, b""))
        with contextlib.suppress(SafetensorsError):
            parse_header(raw, file_size=8 + len(raw))


@FUZZ
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=4),
    shifts=st.lists(st.integers(min_value=-16, max_value=16), min_size=8, max_size=8),
    trailing=st.integers(min_value=-8, max_value=8),
)
@pytest.mark.timeout(120)
def test_offsets_overlapping_or_out_of_range(
    sizes: list[int], shifts: list[int], trailing: int
) -> None:
    """Well-formed entries whose offsets are nudged: overlaps, gaps, past the end."""
    header: dict[str, Any] = {}
    cursor = 0
    for i, n in enumerate(sizes):
        begin = max(0, cursor + shifts[2 * i])
        end = max(begin, begin + 4 * n + shifts[2 * i + 1])
        header[f"t{i}"] = {"dtype": "F32", "shape": [n], "data_offsets": [begin, end]}
        cursor = 4 * n + cursor
    data = b"\0" * max(0, cursor + trailing)
    raw = json.dumps(header).encode()
    try:
        parsed = read_header(bytes_reader(encode(raw, data)), 8 + len(raw) + len(data))
    except SafetensorsError as exc:
        code = exc.code
    else:
        code = ""
    if code:
        assert code in ("bad_offsets", "size_mismatch", "truncated"), code
        return
    # Accepted: the tensors tile the data section exactly.
    spans = sorted((t.begin, t.end) for t in parsed.tensors.values())
    assert spans[0][0] == 0
    assert spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


PICKLE_HEADS = [
    b"PK\x03\x04" + b"\0" * 60,  # a torch.save zip
    pickle.dumps({"a": 1}, protocol=2),
    pickle.dumps({"a": 1}, protocol=4),
    b"\x80\x05" + b"cos\nsystem\n(S'echo pwned'\ntR." + b"\0" * 8,
]


@FUZZ
@given(
    config=st.one_of(
        st.binary(max_size=64),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "peft_type": st.just("LORA") | json_values,
                "r": st.integers(min_value=-2, max_value=64) | json_values,
                "lora_alpha": json_values,
                "target_modules": st.just(["q_proj", "v_proj"]) | json_values,
            },
            optional={
                "rank_pattern": json_values,
                "alpha_pattern": json_values,
                "modules_to_save": json_values,
                "bias": json_values,
                "base_model_name_or_path": json_values,
                "use_dora": json_values,
            },
        ).map(lambda v: json.dumps(v).encode()),
    ),
    weights=st.lists(
        st.tuples(
            st.sampled_from(["adapter_model.safetensors", "model.bin", "a.pt", "x.safetensors"]),
            st.one_of(
                st.binary(max_size=96),
                st.sampled_from(PICKLE_HEADS),
                headers.map(lambda h: encode(json.dumps(h).encode(), b"\0" * 16)),
                st.just(adapter_files(rank=2)["adapter_model.safetensors"]),
            ),
            st.integers(min_value=-4, max_value=4),
        ),
        max_size=3,
    ),
    with_base=st.booleans(),
)
@pytest.mark.timeout(120)
def test_header_checks_never_raise(
    config: bytes, weights: list[tuple[str, bytes, int]], with_base: bool
) -> None:
    """The validator's contract: whatever the upload, a report, never an exception."""
    files = []
    for path, data, size_error in weights:
        assume(len(data) + size_error >= 0)
        files.append(WeightFile(path, len(data) + size_error, bytes_reader(data)))
    base = (
        {name: {"dtype": "F32", "shape": list(shape)} for name, shape in TINY_BASE.items()}
        if with_base
        else None
    )
    report = check_header_compat(
        config=config, weights=files, base_manifest=base, base_id="owner/base"
    )
    assert report.status in ("valid", "invalid")
    if any(path.endswith((".bin", ".pt")) for path, _, _ in weights):
        assert report.status == "invalid"
