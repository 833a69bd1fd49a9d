"""Data: the shipped corpus, text files, uint16 memmaps, the teacher task, splits, determinism,
rank slices and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sizeup.config import RunConfig
from sizeup.data import (
    TEACHER_CLASSES,
    TEACHER_IN_DIM,
    TeacherSource,
    builtin_corpus,
    decode,
    load_tokens,
    make_data,
    write_bin,
)
from sizeup.errors import ConfigError, DataError, SizeupError


def cfg(**kw) -> RunConfig:
    return RunConfig(**{"seq_len": 16, "batch_size": 4, "eval_batches": 2, **kw})


def test_builtin_corpus_is_real_text_over_a_megabyte():
    text = builtin_corpus()
    assert len(text) > 1_000_000
    assert max(text) < 128  # plain ASCII, so vocab 128 would suffice
    s = text.decode("ascii")
    assert "To be, or not to be" in s and "ROMEO" in s
    # Natural language: spaces and 'e' are the commonest characters, as in any English text.
    counts = np.bincount(np.frombuffer(text, dtype=np.uint8), minlength=256)
    assert set(np.argsort(counts)[-2:]) == {ord(" "), ord("e")}


def test_builtin_batches_shapes_and_shift():
    d = make_data(cfg())
    x, y = d.next_train()
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one token
    assert d.tokens_per_batch == 4 * 16
    corpus = builtin_corpus()
    row = decode(torch.cat([x[0], y[0, -1:]]))
    assert row.encode() in corpus


def test_batches_are_deterministic_and_differ_across_steps_and_seeds():
    a, b = make_data(cfg()), make_data(cfg())
    a1, a2 = a.next_train(), a.next_train()
    b1, b2 = b.next_train(), b.next_train()
    assert torch.equal(a1[0], b1[0]) and torch.equal(a2[0], b2[0])
    assert not torch.equal(a1[0], a2[0])
    assert not torch.equal(make_data(cfg(seed=1)).next_train()[0], a1[0])
    assert torch.equal(a.batch_at(1)[0], a2[0])  # resumable: batch k is a function of k


@pytest.mark.parametrize("data", ["builtin", "teacher"])
def test_rank_slices_concatenate_to_the_one_rank_batch(data):
    model = "mlp" if data == "teacher" else "gpt"
    c = cfg(batch_size=6, data=data, model=model)
    full = make_data(c)
    ranks = [make_data(c, rank=r, world_size=3) for r in range(3)]
    for _ in range(3):
        fx, fy = full.next_train()
        parts = [r.next_train() for r in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), fx)
        assert torch.equal(torch.cat([p[1] for p in parts]), fy)
    # validation batches are the same full batches on every rank
    for r in ranks:
        for (vx, vy), (fx, fy) in zip(r.val_batches(), full.val_batches(), strict=True):
            assert torch.equal(vx, fx) and torch.equal(vy, fy)


def test_rank_errors():
    with pytest.raises(ConfigError, match="batch_size"):
        make_data(cfg(batch_size=5), rank=0, world_size=2)
    with pytest.raises(ConfigError, match="rank"):
        make_data(cfg(), rank=2, world_size=2)


def test_split_val_is_the_tail_and_disjoint(tmp_path):
    text = bytes(range(32, 127)) * 20  # 1900 bytes
    f = tmp_path / "t.txt"
    f.write_bytes(text)
    train, val, _ = load_tokens(cfg(data=str(f), val_frac=0.1))
    assert len(val) == 190 and len(train) == 1710
    assert val.tobytes() == text[-190:]
    d = make_data(cfg(data=str(f), val_frac=0.1))
    vb = d.val_batches()
    assert len(vb) == 2 and vb[0][0].shape == (4, 16)
    assert vb is d.val_batches() or all(
        torch.equal(a[0], b[0]) for a, b in zip(vb, d.val_batches(), strict=True)
    )
    # every val window lies inside the tail; every train window ends before it
    for x, y in vb:
        for row in torch.cat([x, y[:, -1:]], dim=1):
            assert bytes(row.tolist()) in text[-190:]
    for step in range(50):
        x, y = d.batch_at(step)
        assert int(y.max()) < 127
    no_val = make_data(cfg(data=str(f), val_frac=0.0))
    assert no_val.val_batches() == []


def test_train_windows_never_reach_the_val_split(tmp_path):
    # Token ids encode position: 0..n_train-1 are train ids < 1000, the tail is >= 1000.
    path = tmp_path / "pos.bin"
    n_train, n_val = 40, 20
    write_bin(path, np.concatenate([np.arange(n_train) % 500, 1000 + np.arange(n_val)]))
    d = make_data(cfg(data=str(path), vocab_size=2000, val_frac=n_val / (n_train + n_val)))
    seen_last = False
    for step in range(300):
        x, y = d.batch_at(step)
        assert int(y.max()) < 1000
        seen_last |= bool((y[:, -1] == n_train - 1).any())
    assert seen_last  # the last train token is reachable (no off-by-one at the edge)


def test_text_file_utf8(tmp_path):
    f = tmp_path / "u.txt"
    f.write_text("héllo wörld, " * 50, encoding="utf-8")
    d = make_data(cfg(data=str(f)))
    x, _ = d.next_train()
    assert int(x.max()) >= 128  # multi-byte UTF-8 arrives as bytes
    with pytest.raises(DataError, match="vocab_size=128"):
        make_data(cfg(data=str(f), vocab_size=128))


def test_memmap_roundtrip_and_folder(tmp_path):
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 5000, size=3000)
    p = write_bin(tmp_path / "all.bin", toks)
    assert np.array_equal(np.fromfile(p, dtype=np.uint16), toks)
    train, val, _ = load_tokens(cfg(data=str(p), vocab_size=5000, val_frac=0.1))
    assert isinstance(train, np.memmap)
    assert np.array_equal(np.concatenate([train, val]), toks)
    x, y = make_data(cfg(data=str(p), vocab_size=5000)).next_train()
    assert x.shape == (4, 16) and int(x.max()) < 5000
    # a folder with train.bin and val.bin uses them as they are
    (tmp_path / "ds").mkdir()
    write_bin(tmp_path / "ds" / "train.bin", toks[:2000])
    write_bin(tmp_path / "ds" / "val.bin", toks[2000:])
    train, val, _ = load_tokens(cfg(data=str(tmp_path / "ds"), vocab_size=5000))
    assert np.array_equal(train, toks[:2000]) and np.array_equal(val, toks[2000:])
    # a folder with only train.bin splits it by val_frac
    (tmp_path / "only").mkdir()
    write_bin(tmp_path / "only" / "train.bin", toks)
    train, val, _ = load_tokens(cfg(data=str(tmp_path / "only"), vocab_size=5000, val_frac=0.2))
    assert len(val) == 600


def test_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        make_data(cfg(data=str(tmp_path / "missing.txt")))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        make_data(cfg(data=str(empty)))
    short = tmp_path / "short.txt"
    short.write_bytes(b"x" * 10)
    with pytest.raises(DataError, match=r"seq_len\+1=17"):
        make_data(cfg(data=str(short)))
    big = write_bin(tmp_path / "big.bin", [1, 2, 300, 4] * 100)
    with pytest.raises(DataError, match="token id 300 is >= vocab_size=256"):
        make_data(cfg(data=str(big)))
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"abc")
    with pytest.raises(DataError, match="uint16"):
        make_data(cfg(data=str(odd)))
    with pytest.raises(DataError, match="train.bin"):
        make_data(cfg(data=str(tmp_path)))
    with pytest.raises(DataError, match="val_frac"):
        long = tmp_path / "long.txt"
        long.write_bytes(b"y" * 100)
        make_data(cfg(data=str(long), val_frac=0.1))  # 10 val tokens < 17
    with pytest.raises(ConfigError, match="data"):
        make_data(cfg(data="teacher"))  # GPT on the teacher task
    with pytest.raises(ConfigError, match="data"):
        make_data(cfg(model="mlp", data=str(short)))
    with pytest.raises(DataError, match="0..65535"):
        write_bin(tmp_path / "neg.bin", [-1, 3])
    assert issubclass(DataError, SizeupError)


def test_teacher_task():
    c = cfg(model="mlp", data="teacher", batch_size=512)
    d = make_data(c)
    assert isinstance(d, TeacherSource) and d.tokens_per_batch == 512
    assert isinstance(make_data(cfg(model="mlp")), TeacherSource)  # default for the MLP
    x, y = d.next_train()
    assert x.shape == (512, TEACHER_IN_DIM) and x.dtype == torch.float32
    assert y.dtype == torch.long and int(y.max()) < TEACHER_CLASSES
    # labels are the teacher's function of x, the same whatever the seed
    other = make_data(cfg(model="mlp", data="teacher", seed=5))
    assert torch.equal(torch.from_numpy(other.label(x.double().numpy())), y)
    # every class occurs: the teacher is not degenerate
    assert len(torch.unique(y)) == TEACHER_CLASSES
    assert make_data(cfg(model="mlp", dtype="float64")).next_train()[0].dtype == torch.float64
    assert make_data(cfg(model="mlp", dtype="bfloat16")).next_train()[0].dtype == torch.bfloat16
    # validation examples are fixed and not drawn from the training stream
    v1, v2 = d.val_batches(), make_data(c).val_batches()
    assert torch.equal(v1[0][0], v2[0][0])
    assert not any(torch.equal(v1[0][0], d.batch_at(s)[0]) for s in range(3))


def test_mlp_learns_the_teacher():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    from sizeup.models import build_model

    c = cfg(model="mlp", data="teacher", width=64, depth=2, batch_size=64)
    m, d = build_model(c.model), make_data(c)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    vx, vy = d.val_batches()[0]
    before = m(vx, vy)[1].item()
    for _ in range(100):
        loss = m(*d.next_train())[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = m(vx, vy)[1].item()
    assert after < 0.7 * before  # measured 2.30 -> 1.23
