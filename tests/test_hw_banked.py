"""hw.banked: a memory split into block-RAM-deep banks, read through registered bank outputs."""

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value, signed
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.banked import BLOCK_RAM_CONFIGS, BankedMemory, bank_depth


@pytest.mark.parametrize("width, depth", [(1, 16384), (2, 8192), (3, 4096), (4, 4096),
                                          (5, 2048), (9, 2048), (10, 1024), (18, 1024),
                                          (19, 512), (36, 512), (64, 512), (200, 512)])
def test_bank_depth_is_one_block_ram_deep(width, depth):
    assert bank_depth(width) == depth
    # One 18-kbit block RAM deep at the configuration's width; wider words side by side.
    w = next((w for w, _ in BLOCK_RAM_CONFIGS if w >= width), 36)
    assert depth * w <= 18432


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(shape=8, depth=1), ValueError, "Memory depth must be an integer of at least 2, not 1"),
    (dict(shape=8, depth=16, bank=6), ValueError, "Bank depth must be a power of two, not 6"),
    (dict(shape=8, depth=16, bank=0), ValueError, "Bank depth must be a positive integer, not 0"),
])
def test_constructor_errors(kwargs, exc, message):
    with pytest.raises(exc, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        BankedMemory(**kwargs)


def _run(mem, words, reads):
    """Write ``words`` from address 0, then present ``reads`` one a cycle; return what
    ``rd_data`` holds two cycles after each address (and, once, one cycle after)."""
    got, early = [], []

    async def bench(ctx):
        ctx.set(mem.wr.en, 1)
        for a, word in enumerate(words):
            ctx.set(mem.wr.addr, a)
            ctx.set(Value.cast(mem.wr.data), word)
            await ctx.tick()
        ctx.set(mem.wr.en, 0)
        for n, a in enumerate(list(reads) + [0, 0]):
            ctx.set(mem.rd_addr, a)
            if n >= 2:
                got.append(ctx.get(Value.cast(mem.rd_data)))
            if n >= 1:
                early.append(ctx.get(Value.cast(mem.rd_data)))
            await ctx.tick()

    sim = Simulator(mem)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, early


@pytest.mark.parametrize("depth, bank", [(37, 8), (32, 8), (9, 8), (16, 32), (2, 1)])
def test_reads_every_word_two_cycles_after_its_address(depth, bank):
    rng = np.random.default_rng(depth * 100 + bank)
    mem = BankedMemory(12, depth, bank=bank)
    assert mem.banks == -(-depth // bank)
    words = [int(v) for v in rng.integers(0, 1 << 12, depth)]
    # Every word, in order and then shuffled, so consecutive reads change bank.
    reads = list(range(depth)) + [int(a) for a in rng.permutation(depth)]
    got, early = _run(mem, words, reads)
    assert got == [words[a] for a in reads]
    # Not one cycle after: the read really takes two (the words differ between banks).
    if mem.banks > 1:
        assert early[:len(reads)] != [words[a] for a in reads]


def test_layout_words_and_default_bank():
    layout = data.ArrayLayout(signed(8), 8)
    mem = BankedMemory(layout, 1536)
    assert (mem.width, mem.bank, mem.banks) == (64, 512, 3)
    frag = Fragment.get(mem, None)
    assert sorted(sub[1] for sub in frag.subfragments) == ["bank0", "bank1", "bank2"]
    small = BankedMemory(layout, 4, bank=2)
    words = [0x0102030405060708, 0x7F80FF0011223344, 0xFFFFFFFFFFFFFFFF, 0]
    got, _ = _run(small, words, [3, 2, 1, 0])
    assert got == words[::-1]


def test_deep_memory_banks_only_past_one_block_ram():
    from amaranth.lib.memory import Memory

    from hw.banked import deep_memory

    mems = [deep_memory(signed(16), 1024), deep_memory(signed(16), 1025),
            deep_memory(data.ArrayLayout(signed(8), 8), 513)]
    for mem in mems:
        Fragment.get(mem, None)
    assert isinstance(mems[0], Memory)
    assert isinstance(mems[1], BankedMemory) and (mems[1].bank, mems[1].banks) == (1024, 2)
    assert isinstance(mems[2], BankedMemory) and (mems[2].bank, mems[2].banks) == (512, 2)
