"""The strict safetensors parser: what it accepts, and what the reference library lets through."""

from __future__ import annotations

import io
import json
import struct

import pytest
import torch
from safetensors.torch import load as reference_load
from safetensors.torch import save as reference_save

from tests.workers.adapters import raw_file, raw_header, safetensors_bytes
from workers.safetensors_io import (
    MAX_TENSOR_NAME_LENGTH,
    SafetensorsError,
    SafetensorsHeader,
    bytes_reader,
    file_reader,
    iter_tensors,
    load_tensor,
    read_header,
)


def parse(data: bytes, **kwargs: int) -> SafetensorsHeader:
    return read_header(bytes_reader(data), len(data), **kwargs)


def entry(begin: int = 0, end: int = 4, **extra: object) -> dict[str, object]:
    return {"dtype": "F32", "shape": [(end - begin) // 4], "data_offsets": [begin, end], **extra}


DUPLICATE = (
    '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
    '"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
)

# Inputs the reference loader accepts without complaint, each with the code Strata gives.
LENIENT_IN_REFERENCE = [
    pytest.param(raw_file(DUPLICATE, bytes(4)), "duplicate_tensor_key", id="duplicate-keys"),
    pytest.param(
        raw_header({"a": entry(extra=1)}, 4), "unknown_tensor_field", id="unknown-entry-field"
    ),
    pytest.param(raw_header({"": entry()}, 4), "bad_tensor_name", id="empty-name"),
    pytest.param(raw_header({"a\x00b": entry()}, 4), "bad_tensor_name", id="nul-in-name"),
    pytest.param(raw_header({"../etc/passwd": entry()}, 4), "bad_tensor_name", id="path-name"),
    pytest.param(raw_header({"a/b": entry()}, 4), "bad_tensor_name", id="slash-name"),
    pytest.param(
        raw_header({"a" * (MAX_TENSOR_NAME_LENGTH + 1): entry()}, 4),
        "bad_tensor_name",
        id="overlong-name",
    ),
    pytest.param(raw_header({}, 0), "no_tensors", id="no-tensors"),
    pytest.param(raw_header({"__metadata__": {"format": "pt"}}, 0), "no_tensors", id="only-meta"),
]


@pytest.mark.parametrize(("data", "code"), LENIENT_IN_REFERENCE)
def test_it_rejects_what_the_reference_loader_accepts(data: bytes, code: str) -> None:
    reference_load(data)  # the reason Strata parses headers itself
    with pytest.raises(SafetensorsError) as err:
        parse(data)
    assert err.value.code == code


def test_it_rejects_duplicate_tensor_keys() -> None:
    with pytest.raises(SafetensorsError) as err:
        parse(raw_file(DUPLICATE, bytes(4)))
    assert err.value.code == "duplicate_tensor_key"
    assert err.value.tensor == "a"


def test_it_rejects_absurd_numbers_of_tensors() -> None:
    entries = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(11)}
    with pytest.raises(SafetensorsError) as err:
        parse(raw_header(entries, 0), max_tensors=10)
    assert err.value.code == "too_many_tensors"


def test_it_rejects_a_header_over_the_byte_limit_without_reading_it() -> None:
    reads: list[tuple[int, int]] = []
    data = raw_header({"a": entry()}, 4)

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return data[offset : offset + length]

    with pytest.raises(SafetensorsError) as err:
        read_header(read, len(data), max_header_bytes=16)
    assert err.value.code == "header_too_large"
    assert reads == [(0, 8)]


def test_it_rejects_a_header_length_past_the_end_of_the_file() -> None:
    data = struct.pack("<Q", 1000) + b"{}"
    with pytest.raises(SafetensorsError) as err:
        parse(data)
    assert err.value.code == "truncated"


@pytest.mark.parametrize(
    ("entries", "data_len", "code"),
    [
        pytest.param({"a": entry(0, 4), "b": entry(8, 12)}, 12, "bad_offsets", id="gap"),
        pytest.param({"a": entry(0, 8), "b": entry(4, 12)}, 12, "bad_offsets", id="overlap"),
        pytest.param({"a": entry(0, 4)}, 8, "bad_offsets", id="trailing-bytes"),
        pytest.param({"a": entry(0, 8)}, 4, "bad_offsets", id="truncated-data"),
        pytest.param(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}},
            4,
            "size_mismatch",
            id="size-mismatch",
        ),
        pytest.param(
            {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}},
            4,
            "bad_offsets",
            id="reversed-offsets",
        ),
        pytest.param(
            {"a": {"dtype": "F31", "shape": [1], "data_offsets": [0, 4]}},
            4,
            "unknown_dtype",
            id="unknown-dtype",
        ),
        pytest.param(
            {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
            4,
            "bad_shape",
            id="negative-dim",
        ),
        pytest.param(
            {"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}},
            4,
            "bad_shape",
            id="bool-dim",
        ),
        pytest.param({"a": {"dtype": "F32", "shape": [1]}}, 4, "bad_tensor_entry", id="no-offsets"),
        pytest.param({"a": [1, 2]}, 4, "bad_tensor_entry", id="entry-not-object"),
        pytest.param(
            {"__metadata__": {"k": 1}, "a": entry()}, 4, "bad_metadata", id="metadata-not-strings"
        ),
    ],
)
def test_it_rejects_malformed_entries_and_layouts(
    entries: dict[str, object], data_len: int, code: str
) -> None:
    with pytest.raises(SafetensorsError) as err:
        parse(raw_header(entries, data_len))
    assert err.value.code == code


@pytest.mark.parametrize(
    ("header", "code"),
    [
        pytest.param(b"\xff\xfe{}", "header_not_utf8", id="not-utf8"),
        pytest.param(b"[1, 2]", "header_not_json", id="json-array"),
        pytest.param(b'{"a": ', "header_not_json", id="cut-json"),
        pytest.param(b"[" * 5000 + b"]" * 5000, "header_not_json", id="deep-nesting"),
    ],
)
def test_it_rejects_headers_that_are_not_a_json_object(header: bytes, code: str) -> None:
    with pytest.raises(SafetensorsError) as err:
        parse(raw_file(header))
    assert err.value.code == code


def test_it_rejects_a_file_shorter_than_the_length_prefix() -> None:
    with pytest.raises(SafetensorsError) as err:
        parse(b"\x01\x02")
    assert err.value.code == "truncated"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
def test_it_reads_reference_files_bit_exactly(dtype: torch.dtype) -> None:
    tensors = {
        "w": (torch.randn(3, 5) * 100).to(dtype),
        "v": torch.arange(7).to(dtype),
        "empty": torch.zeros(0, 4, dtype=dtype),
    }
    data = reference_save(tensors, metadata={"format": "pt"})
    read = bytes_reader(data)
    header = read_header(read, len(data))
    assert header.metadata == {"format": "pt"}
    assert header.manifest()["w"] == {"dtype": header.tensors["w"].dtype, "shape": [3, 5]}
    for name, expected in tensors.items():
        loaded = load_tensor(read, header, name)
        assert loaded.dtype == dtype
        assert torch.equal(loaded.view(-1).view(torch.uint8), expected.view(-1).view(torch.uint8))


def test_it_keeps_bf16_values_that_f16_cannot_hold() -> None:
    big = torch.tensor([3.0e38, -1.0e-38, 1.5], dtype=torch.bfloat16)
    data = safetensors_bytes({"x": big})
    read = bytes_reader(data)
    loaded = load_tensor(read, read_header(read, len(data)), "x")
    assert loaded.dtype == torch.bfloat16
    assert torch.equal(loaded, big)


def test_it_iterates_tensors_in_file_order_whatever_the_header_order() -> None:
    tensors = {"first": torch.ones(2), "second": torch.zeros(3), "third": torch.full((1,), 7.0)}
    data = safetensors_bytes(tensors, data_order=["third", "first", "second"])
    with io.BytesIO(data) as fh:
        read = file_reader(fh)
        header = read_header(read, len(data))
        names = [name for name, _ in iter_tensors(read, header)]
        assert names == ["third", "first", "second"]
        assert torch.equal(load_tensor(read, header, "third"), tensors["third"])


def test_the_file_reader_refuses_short_reads() -> None:
    with io.BytesIO(b"abc") as fh, pytest.raises(SafetensorsError) as err:
        file_reader(fh)(0, 10)
    assert err.value.code == "truncated"


def test_the_manifest_is_json_serializable_and_sorted() -> None:
    data = safetensors_bytes({"b": torch.zeros(2, 3), "a": torch.zeros(1, dtype=torch.bfloat16)})
    manifest = parse(data).manifest()
    assert list(manifest) == ["a", "b"]
    assert json.loads(json.dumps(manifest)) == {
        "a": {"dtype": "BF16", "shape": [1]},
        "b": {"dtype": "F32", "shape": [2, 3]},
    }
