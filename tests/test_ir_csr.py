import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ir.csr import CSCLanes, CSCMatrix, CSRMatrix, encode_csc, encode_csc_lanes, encode_csr

DTYPES = [np.int8, np.int16, np.int32, np.uint8, np.float32, np.float64]


@st.composite
def matrices(draw, max_side=24):
    rows, cols = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    dtype = draw(st.sampled_from(DTYPES))
    if np.dtype(dtype).kind == "f":
        elements = st.floats(-8, 8, width=32).filter(lambda x: x != 0)
    else:
        elements = st.integers(1 if np.dtype(dtype).kind == "u" else -100, 100).filter(bool)
    w = draw(arrays(dtype, (rows, cols), elements=elements))
    kind = draw(st.sampled_from(["dense", "zero", "mask", "sparse"]))
    if kind == "zero":
        w[...] = 0
    elif kind == "mask":
        w[~draw(arrays(np.bool_, (rows, cols)))] = 0
    elif kind == "sparse":
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        w[rng.random((rows, cols)) > draw(st.sampled_from([0.02, 0.1, 0.3]))] = 0
    return w


def check_layout(enc, w, lines):
    bits, nnz = enc.rel_index_bits, int(np.count_nonzero(w))
    assert enc.ptr.shape == (lines + 1,) and enc.ptr[0] == 0 and enc.ptr[-1] == enc.value_count
    assert enc.values.dtype == w.dtype and enc.rel_index.dtype == np.int64
    assert enc.rel_index.min(initial=0) >= 0 and enc.rel_index.max(initial=0) < 2**bits
    pad = enc.values == 0
    assert np.all(enc.rel_index[pad] == 2**bits - 1)
    assert enc.value_count - enc.padding_count == nnz
    assert enc.index_bits == enc.value_count * bits + (lines + 1) * max(
        1, int(np.ceil(np.log2(enc.value_count + 1))))


@settings(max_examples=100, deadline=None)
@given(matrices(), st.integers(1, 16))
def test_csc_roundtrip(w, bits):
    enc = encode_csc(w, index_bits=bits)
    out = enc.decode()
    assert out.dtype == w.dtype and np.array_equal(out, w)
    check_layout(enc, w, w.shape[1])
    rows, cols = np.nonzero(w.T)[::-1]
    real = enc.values != 0
    assert np.array_equal(enc.absolute_index()[real], rows)
    assert np.array_equal(enc.line_index()[real], cols)


@settings(max_examples=100, deadline=None)
@given(matrices(), st.integers(1, 4))
def test_csr_roundtrip(w, bits):
    enc = encode_csr(w, index_bits=bits)
    out = enc.decode()
    assert out.dtype == w.dtype and np.array_equal(out, w)
    check_layout(enc, w, w.shape[0])
    # padding is minimal: one entry per 2**bits skipped zeros in a gap
    gaps = []
    for row in w:
        pos = np.flatnonzero(row)
        gaps += list(np.diff(np.concatenate([[-1], pos])) - 1)
    assert enc.padding_count == sum(g // 2**bits for g in gaps)


@settings(max_examples=60, deadline=None)
@given(matrices(), st.integers(1, 7), st.integers(1, 6))
def test_lanes_roundtrip(w, lanes, bits):
    enc = encode_csc_lanes(w, lanes, index_bits=bits)
    assert isinstance(enc, CSCLanes) and enc.lanes == lanes
    assert np.array_equal(enc.decode(), w) and enc.decode().dtype == w.dtype
    for p, m in enumerate(enc.lane_matrices):
        assert m.shape == (len(range(p, w.shape[0], lanes)), w.shape[1])
        assert np.array_equal(m.decode(), w[p::lanes])
    assert enc.value_count == sum(m.value_count for m in enc.lane_matrices)
    assert enc.index_bits == sum(m.index_bits for m in enc.lane_matrices)


W = np.array([[0, 0, 3], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [2, 0, 4]], dtype=np.int16)


def test_csc_exact_arrays():
    enc = encode_csc(W, index_bits=2)
    assert isinstance(enc, CSCMatrix) and enc.shape == (6, 3) and enc.rel_index_bits == 2
    # column 2: row 0, then 4 zeros > 3 = max gap: padding at row 4, then row 5 with gap 0
    assert enc.values.tolist() == [1, 2, 3, 0, 4]
    assert enc.rel_index.tolist() == [1, 3, 0, 3, 0]
    assert enc.ptr.tolist() == [0, 2, 2, 5]
    assert enc.absolute_index().tolist() == [1, 5, 0, 4, 5]
    assert enc.line_index().tolist() == [0, 0, 2, 2, 2]
    assert enc.value_count == 5 and enc.padding_count == 1 and enc.pointer_bits == 3
    assert enc.index_bits == 5 * 2 + 4 * 3


def test_csr_exact_arrays():
    enc = encode_csr(W.T, index_bits=1)
    assert isinstance(enc, CSRMatrix)
    assert enc.values.tolist() == [1, 0, 2, 3, 0, 0, 4]
    assert enc.rel_index.tolist() == [1, 1, 1, 0, 1, 1, 0]
    assert enc.ptr.tolist() == [0, 3, 3, 7]
    assert enc.index_bits == 7 * 1 + 4 * 3


def test_wide_gap_and_default_bits():
    w = np.zeros((1, 40), dtype=np.float32)
    w[0, 39] = -1.5
    enc = encode_csr(w)  # 4 bits: padding at 15 and 31, then 7 zeros
    assert enc.values.tolist() == [0, 0, -1.5]
    assert enc.rel_index.tolist() == [15, 15, 7]
    assert np.array_equal(encode_csc(w.T).decode(), w.T)


def test_lanes_exact_arrays():
    enc = encode_csc_lanes(W, 4, index_bits=2)
    assert [m.shape for m in enc.lane_matrices] == [(2, 3), (2, 3), (1, 3), (1, 3)]
    lane1 = enc.lane_matrices[1]  # rows 1 and 5 -> lane rows 0 and 1
    assert lane1.values.tolist() == [1, 2, 4]
    assert lane1.rel_index.tolist() == [0, 0, 1]
    assert lane1.ptr.tolist() == [0, 2, 2, 3]
    assert enc.lane_value_counts.tolist() == [1, 3, 0, 0]


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 7), (7, 1)])
def test_degenerate_shapes(shape):
    w = np.arange(1, np.prod(shape) + 1, dtype=np.int32).reshape(shape)
    for enc in (encode_csc(w), encode_csr(w), encode_csc_lanes(w, 3)):
        assert np.array_equal(enc.decode(), w)


def test_accepts_lists():
    assert encode_csr([[0, 1], [2, 0]]).values.tolist() == [1, 2]


@pytest.mark.parametrize("bits, exc", [(0, ValueError), (17, ValueError), (-1, ValueError),
                                       ("4", TypeError), (4.0, TypeError), (True, TypeError)])
def test_index_bits_error(bits, exc):
    msg = f"Index bits must be an integer from 1 to 16, not {bits!r}"
    for fn in (encode_csc, encode_csr):
        with pytest.raises(exc) as info:
            fn(W, index_bits=bits)
        assert str(info.value) == msg
    with pytest.raises(exc) as info:
        encode_csc_lanes(W, 2, index_bits=bits)
    assert str(info.value) == msg


def test_weight_errors():
    with pytest.raises(ValueError) as info:
        encode_csc(np.zeros((2, 3, 4)))
    assert str(info.value) == "Weight must be a 2-D array, not shape (2, 3, 4)"
    with pytest.raises(TypeError) as info:
        encode_csr(np.zeros((2, 2), dtype=bool))
    assert str(info.value) == "Weight must be an integer or floating-point array, not dtype bool"
    with pytest.raises(TypeError) as info:
        encode_csr(np.zeros((2, 2), dtype=complex))
    assert str(info.value) == ("Weight must be an integer or floating-point array, "
                               "not dtype complex128")


@pytest.mark.parametrize("lanes, exc", [(0, ValueError), (-2, ValueError), ("2", TypeError),
                                        (2.0, TypeError)])
def test_lanes_error(lanes, exc):
    with pytest.raises(exc) as info:
        encode_csc_lanes(W, lanes)
    assert str(info.value) == f"Lanes must be a positive integer, not {lanes!r}"


def test_constructor_checks_layout():
    with pytest.raises(ValueError) as info:
        CSCMatrix((6, 3), 2, np.array([1]), np.array([0]), np.array([0, 1, 1]))
    assert str(info.value) == "Pointers must be 4 non-decreasing offsets from 0 to 1"
    with pytest.raises(ValueError) as info:
        CSCMatrix((6, 3), 2, np.array([1]), np.array([4]), np.array([0, 1, 1, 1]))
    assert str(info.value) == "Relative indices must be from 0 to 3"
    with pytest.raises(ValueError) as info:
        CSCMatrix((2, 1), 2, np.array([1, 1]), np.array([1, 0]), np.array([0, 2]))
    assert str(info.value) == "Relative indices run past the end of a line of length 2"
