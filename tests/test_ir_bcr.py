import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir.bcr import BCRMatrix, bcr_violations, encode_bcr, is_bcr_mask

DTYPES = [np.int8, np.int32, np.float32, np.float64]


@st.composite
def cases(draw, max_side=20):
    """(w, block, mask): w non-zero only inside mask; mask BCR or not."""
    rows, cols = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    block = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["bcr", "random", "zero", "dense"]))
    if kind == "bcr":  # per block a random product of kept rows and columns
        keep_r = rng.random((rows, -(-cols // block[1]))) < draw(st.sampled_from([0.2, 0.5, 0.9]))
        keep_c = rng.random((-(-rows // block[0]), cols)) < draw(st.sampled_from([0.2, 0.5, 0.9]))
        mask = (np.repeat(keep_r, block[1], axis=1)[:, :cols]
                & np.repeat(keep_c, block[0], axis=0)[:rows])
    else:
        mask = rng.random((rows, cols)) < {"random": draw(st.sampled_from([0.05, 0.3, 0.7])),
                                           "zero": 0.0, "dense": 1.1}[kind]
    dtype = draw(st.sampled_from(DTYPES))
    w = (rng.integers(-9, 10, (rows, cols)) * mask).astype(dtype)
    if np.dtype(dtype).kind == "f":
        w *= rng.random((rows, cols)).astype(dtype)
    return w, block, mask


def brute_violations(mask, block):
    br, bc = block
    bad = []
    for r in range(-(-mask.shape[0] // br)):
        for c in range(-(-mask.shape[1] // bc)):
            m = mask[r * br:(r + 1) * br, c * bc:(c + 1) * bc]
            if not np.array_equal(m, np.outer(m.any(axis=1), m.any(axis=0))):
                bad.append((r, c))
    return bad


@settings(max_examples=300, deadline=None)
@given(cases(), st.booleans())
def test_roundtrip(case, use_mask):
    w, block, mask = case
    mask = mask if use_mask else w != 0
    enc = encode_bcr(w, block, mask=mask if use_mask else None)
    out = enc.decode()
    assert out.dtype == w.dtype and np.array_equal(out, w)
    # blocks(): kept rows/cols are exactly the mask's, sub-block is w's product
    br, bc = block
    seen = np.zeros(mask.shape, dtype=bool)
    coords = []
    for r, c, rows, cols, sub in enc.blocks():
        coords.append((r, c))
        m = mask[r * br:(r + 1) * br, c * bc:(c + 1) * bc]
        assert np.array_equal(rows - r * br, np.flatnonzero(m.any(axis=1)))
        assert np.array_equal(cols - c * bc, np.flatnonzero(m.any(axis=0)))
        assert np.array_equal(sub, w[np.ix_(rows, cols)])
        seen[np.ix_(rows, cols)] = True
    assert coords == sorted(coords) and len(coords) == enc.block_count
    assert not np.any(mask & ~seen)
    assert enc.value_count == int(seen.sum())
    if is_bcr_mask(mask, block):
        assert np.array_equal(seen, mask)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_violations_match_definition(case):
    _, block, mask = case
    assert bcr_violations(mask, block) == brute_violations(mask, block)
    assert bcr_violations(mask.astype(np.uint8), block) == brute_violations(mask, block)
    assert is_bcr_mask(mask, block) == (not brute_violations(mask, block))


W = np.array([[1, 0, 2, 0, 0],
              [0, 0, 0, 0, 0],
              [3, 0, 4, 0, 5],
              [0, 0, 0, 0, 6],
              [7, 0, 0, 0, 0]], dtype=np.int16)


def test_exact_arrays():
    enc = encode_bcr(W, (2, 3))
    assert isinstance(enc, BCRMatrix) and enc.grid == (3, 2) and enc.block_count == 4
    assert enc.block_row.tolist() == [0, 1, 1, 2]
    assert enc.block_col.tolist() == [0, 0, 1, 0]
    assert enc.row_ptr.tolist() == [0, 1, 2, 4, 5]
    assert enc.row_index.tolist() == [0, 0, 0, 1, 0]
    assert enc.col_ptr.tolist() == [0, 2, 4, 5, 6]
    assert enc.col_index.tolist() == [0, 2, 0, 2, 1, 0]
    assert enc.value_ptr.tolist() == [0, 2, 4, 6, 7]
    assert enc.values.tolist() == [1, 2, 3, 4, 5, 6, 7] and enc.values.dtype == np.int16
    # 4 blocks x (clog2(3) + clog2(2) + bitlen(2) + bitlen(3)) + 5 rows x 1 + 6 cols x 2
    assert enc.index_bits == 4 * (2 + 1 + 2 + 2) + 5 * 1 + 6 * 2
    r, c, rows, cols, sub = list(enc.blocks())[2]
    assert (r, c) == (1, 1) and rows.tolist() == [2, 3] and cols.tolist() == [4]
    assert sub.tolist() == [[5], [6]]


def test_mask_keeps_zeros_inside_product():
    w = np.array([[1, 0], [0, 2]], dtype=np.float32)
    enc = encode_bcr(w, (2, 2))  # w != 0 is not BCR: the product stores the two zeros
    assert enc.values.tolist() == [1, 0, 0, 2]
    assert bcr_violations(w != 0, (2, 2)) == [(0, 0)] and not is_bcr_mask(w != 0, (2, 2))
    mask = np.array([[1, 1], [0, 0]], dtype=np.uint8)
    enc = encode_bcr(np.array([[0, 5], [0, 0]]), (2, 2), mask=mask)  # kept entry w == 0
    assert enc.row_index.tolist() == [0] and enc.col_index.tolist() == [0, 1]
    assert enc.values.tolist() == [0, 5]


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0), (1, 7), (7, 1)])
def test_degenerate_shapes(shape):
    w = np.arange(1, np.prod(shape) + 1, dtype=np.int32).reshape(shape)
    enc = encode_bcr(w, (2, 3))
    assert np.array_equal(enc.decode(), w)
    assert enc.value_count == w.size


def test_all_zero_blocks_cost_nothing():
    enc = encode_bcr(np.zeros((8, 8)), (4, 4))
    assert enc.block_count == 0 and enc.value_count == 0 and enc.index_bits == 0
    assert list(enc.blocks()) == []


@pytest.mark.parametrize("block, exc", [((0, 4), ValueError), ((2, -1), ValueError),
                                        ((2,), TypeError), ((2, 2, 2), TypeError),
                                        ((2.0, 2), TypeError), (4, TypeError),
                                        ((True, 2), TypeError)])
def test_block_error(block, exc):
    msg = f"Block must be a pair of positive integers, not {block!r}"
    with pytest.raises(exc) as info:
        encode_bcr(W, block)
    assert str(info.value) == msg
    with pytest.raises(exc) as info:
        bcr_violations(W != 0, block)
    assert str(info.value) == msg


def test_errors():
    mask = W != 0
    mask[4, 0] = False
    with pytest.raises(ValueError) as info:
        encode_bcr(W, (2, 2), mask=mask)
    assert str(info.value) == "Weight is non-zero outside the mask at (4, 0)"
    with pytest.raises(ValueError) as info:
        encode_bcr(W, (2, 2), mask=np.ones((5, 4), dtype=bool))
    assert str(info.value) == "Mask shape (5, 4) does not match weight shape (5, 5)"
    with pytest.raises(ValueError) as info:
        encode_bcr(W, (2, 2), mask=np.full((5, 5), 2))
    assert str(info.value) == "Mask must contain only 0 and 1"
    with pytest.raises(TypeError) as info:
        encode_bcr(W, (2, 2), mask=np.ones((5, 5)))
    assert str(info.value) == "Mask must be a boolean or 0/1 integer array, not dtype float64"
    with pytest.raises(ValueError) as info:
        encode_bcr(np.zeros(4), (2, 2))
    assert str(info.value) == "Weight must be a 2-D array, not shape (4,)"
    with pytest.raises(TypeError) as info:
        encode_bcr(np.zeros((2, 2), dtype=bool), (2, 2))
    assert str(info.value) == "Weight must be an integer or floating-point array, not dtype bool"
    with pytest.raises(ValueError) as info:
        bcr_violations(np.zeros((2, 2, 2), dtype=bool), (2, 2))
    assert str(info.value) == "Mask must be a 2-D array, not shape (2, 2, 2)"


def test_constructor_checks_layout():
    enc = encode_bcr(W, (2, 3))
    with pytest.raises(ValueError) as info:
        BCRMatrix(enc.shape, enc.block, enc.block_row, enc.block_col, enc.row_ptr,
                  enc.row_index, enc.col_ptr, enc.col_index, enc.value_ptr, enc.values[:-1])
    assert str(info.value) == "Pointers do not match the kept rows, columns and values"
    with pytest.raises(ValueError) as info:
        BCRMatrix(enc.shape, enc.block, enc.block_row + 1, enc.block_col, enc.row_ptr,
                  enc.row_index, enc.col_ptr, enc.col_index, enc.value_ptr, enc.values)
    assert str(info.value) == "Block coordinates must lie in the 3 x 2 block grid"
