"""Training data: the built-in byte-level corpus, user text files, nanoGPT-style uint16 token
memmaps, and a synthetic teacher classification task for the MLP.

Every source is deterministic. A run reads one stream of sequences (examples for the MLP), drawn
in chunks of batch_size: chunk c from a generator seeded by (cfg.run.seed, c). Step k takes the
sequences from the number seen before it (``RunConfig.batch_window``) on, as many as its batch:
without a batch ramp that is exactly chunk k; with one, a step before the full batch takes part of
a chunk, and the run sees the same sequences in the same order as the run at the full batch, only
grouped into smaller steps. Either way batch k is a pure function of k, so a run can resume at any
step and forks and WSD branches draw the batches the run would have drawn; the global batch is
the same whatever the world size. Each rank takes its contiguous slice of the global batch, so 2
DDP ranks together see exactly the sequences 1 rank sees. Validation batches are fixed windows
from the tail of the token stream and are the same full batches on every rank. Gradient
accumulation (``micro_batch_size``) draws nothing differently: batch k is still the step's whole
batch (this rank's slice), which the trainer cuts into micro-batches (sizeup.train.step).
"""

from __future__ import annotations

import functools
import lzma
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from sizeup.config import RunConfig
from sizeup.errors import ConfigError, DataError
from sizeup.registry import get_model

BUILTIN_ASSET = "shakespeare.txt.xz"
TEACHER_IN_DIM = 64  # input dimension of the teacher task
TEACHER_CLASSES = 10  # number of classes of the teacher task
TEACHER_HIDDEN = 128  # hidden width of the fixed teacher network
TEACHER_SEED = 1234  # the teacher is one fixed function; cfg.run.seed only changes the samples

Batch = tuple[torch.Tensor, torch.Tensor]


@functools.lru_cache(maxsize=1)
def builtin_corpus() -> bytes:
    """The shipped default corpus: Shakespeare's plays and poems (public domain), ~5 MB of ASCII."""
    blob = resources.files("sizeup").joinpath("assets", BUILTIN_ASSET).read_bytes()
    return lzma.decompress(blob)


def decode(tokens: torch.Tensor | np.ndarray | list[int]) -> str:
    """Byte-level tokens back to text (invalid UTF-8 is replaced, not raised)."""
    arr = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens, dtype=np.uint8)
    return arr.tobytes().decode("utf-8", errors="replace")


def write_bin(path: str | Path, tokens: np.ndarray | list[int] | bytes) -> Path:
    """Write token ids as a nanoGPT-style flat uint16 file (ids must lie in 0..65535)."""
    arr = np.frombuffer(tokens, dtype=np.uint8) if isinstance(tokens, bytes) else np.asarray(tokens)
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint16).max):
        raise DataError(
            f"tokens: ids must lie in 0..65535 for a uint16 .bin, got "
            f"{int(arr.min())}..{int(arr.max())}"
        )
    p = Path(path)
    arr.astype(np.uint16).tofile(p)
    return p


class DataSource:
    """What the trainer pulls from: next_train() for this rank, fixed val_batches()."""

    tokens_per_batch: int  # tokens (or examples) in one GLOBAL batch, i.e. per optimizer step

    def __init__(self, cfg: RunConfig, rank: int = 0, world_size: int = 1):
        if not isinstance(world_size, int) or world_size < 1:
            raise ConfigError("world_size", world_size, "a positive integer")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError("rank", rank, f"an integer in [0, {world_size})")
        check_divisible(cfg, world_size)
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.local_batch_size = cfg.data.batch_size // world_size
        self.step = 0  # index of the next training batch

    def batch_at(self, step: int) -> Batch:
        """This rank's slice of global training batch number ``step`` (pure function of step)."""
        raise NotImplementedError

    def next_train(self) -> Batch:
        """This rank's slice of the next global training batch."""
        batch = self.batch_at(self.step)
        self.step += 1
        return batch

    def val_batches(self) -> list[Batch]:
        """The fixed validation batches (full global batches, identical on every rank)."""
        raise NotImplementedError

    def _rng(self, step: int) -> np.random.Generator:
        # SeedSequence mixes (seed, step) so neighbouring steps and seeds are independent.
        return np.random.default_rng([self.cfg.run.seed, step])

    def _rank_slice(self) -> slice:
        lo = self.rank * self.local_batch_size
        return slice(lo, lo + self.local_batch_size)

    def _chunks(self, step: int) -> list[tuple[int, slice]]:
        """(chunk, slice of it) for this rank's sequences of global batch ``step``: the stream
        positions [start, start + batch) of ``RunConfig.batch_window``, this rank's contiguous
        part, cut at chunk boundaries (chunk c: positions c B .. c B + B - 1, B = batch_size)."""
        start, size = self.cfg.batch_window(step)
        local = size // self.world_size
        lo = start + self.rank * local
        hi = lo + local
        B = self.cfg.data.batch_size
        return [
            (c, slice(max(lo, c * B) - c * B, min(hi, c * B + B) - c * B))
            for c in range(lo // B, (hi - 1) // B + 1)
        ]


class TokenSource(DataSource):
    """Random windows of seq_len+1 tokens from a train stream; fixed windows from a val stream."""

    def __init__(
        self,
        cfg: RunConfig,
        train: np.ndarray,
        val: np.ndarray | None,
        rank: int = 0,
        world_size: int = 1,
        name: str = "data",
    ):
        super().__init__(cfg, rank, world_size)
        need = cfg.model.seq_len + 1
        if len(train) < need:
            raise DataError(
                f"{name}: the training split has {len(train)} tokens, shorter than "
                f"seq_len+1={need}; use a longer corpus or a smaller seq_len"
            )
        if val is not None and len(val) and len(val) < need:
            raise DataError(
                f"{name}: the validation split has {len(val)} tokens, shorter than "
                f"seq_len+1={need}; raise val_frac={cfg.data.val_frac} or lower seq_len"
            )
        self.train, self.val, self.name = train, val, name
        self.tokens_per_batch = cfg.tokens_per_step
        self._window = np.arange(need)
        self._val: list[Batch] | None = None

    def _gather(self, data: np.ndarray, starts: np.ndarray) -> Batch:
        # One fancy-index read of (B, seq_len+1) tokens; works on memmaps without loading them.
        chunk = torch.from_numpy(data[starts[:, None] + self._window].astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def batch_at(self, step: int) -> Batch:
        """This rank's slice of global training batch ``step``: x and y = x shifted by one."""
        hi = len(self.train) - self.cfg.model.seq_len  # exclusive bound on window starts
        B = self.cfg.data.batch_size
        starts = [self._rng(c).integers(0, hi, size=B)[sl] for c, sl in self._chunks(step)]
        return self._gather(self.train, np.concatenate(starts))

    def val_batches(self) -> list[Batch]:
        """eval_batches fixed batches of evenly spaced windows over the validation split."""
        if self._val is None:
            if self.val is None or len(self.val) == 0:
                self._val = []
            else:
                n = self.cfg.data.eval_batches * self.cfg.data.batch_size
                starts = np.linspace(0, len(self.val) - self.cfg.model.seq_len - 1, n).round()
                starts = starts.astype(np.int64).reshape(self.cfg.data.eval_batches, -1)
                self._val = [self._gather(self.val, s) for s in starts]
        return self._val


class TeacherSource(DataSource):
    """Gaussian inputs labelled by a fixed random teacher network (argmax of its logits)."""

    def __init__(self, cfg: RunConfig, rank: int = 0, world_size: int = 1):
        super().__init__(cfg, rank, world_size)
        g = np.random.default_rng(TEACHER_SEED)
        # Variance-preserving random weights so the teacher's logits are O(1) and classes balanced.
        self.w1 = g.standard_normal((TEACHER_IN_DIM, TEACHER_HIDDEN)) / np.sqrt(TEACHER_IN_DIM)
        self.w2 = g.standard_normal((TEACHER_HIDDEN, TEACHER_CLASSES)) / np.sqrt(TEACHER_HIDDEN)
        # Inputs in the model's dtype (the trainer casts the model to cfg.run.dtype).
        self.dtype = {"float64": torch.float64, "bfloat16": torch.bfloat16}.get(
            cfg.run.dtype, torch.float32
        )
        self.tokens_per_batch = cfg.data.batch_size
        self._val: list[Batch] | None = None

    def label(self, x: np.ndarray) -> np.ndarray:
        """The teacher's class for each row of x."""
        return np.argmax(np.tanh(x @ self.w1) @ self.w2, axis=1)

    def _sample(self, rng: np.random.Generator, n: int) -> Batch:
        x = rng.standard_normal((n, TEACHER_IN_DIM))
        return (torch.from_numpy(x).to(self.dtype), torch.from_numpy(self.label(x)).long())

    def batch_at(self, step: int) -> Batch:
        """This rank's slice of global batch ``step`` of fresh teacher-labelled examples."""
        parts = [
            (self._sample(self._rng(c), self.cfg.data.batch_size), sl)
            for c, sl in self._chunks(step)
        ]
        if len(parts) == 1:
            (x, y), sl = parts[0]
            return x[sl], y[sl]
        return (
            torch.cat([x[sl] for (x, _), sl in parts]),
            torch.cat([y[sl] for (_, y), sl in parts]),
        )

    def val_batches(self) -> list[Batch]:
        """eval_batches fixed batches from a stream disjoint from training (seed offset)."""
        if self._val is None:
            rng = np.random.default_rng([self.cfg.run.seed, 2**31, 7])  # never a train step
            d = self.cfg.data
            self._val = [self._sample(rng, d.batch_size) for _ in range(d.eval_batches)]
        return self._val


def check_divisible(cfg: RunConfig, world_size: int) -> None:
    """Every batch the run takes (batch_size, and each stage of its batch ramp) splits into
    equal slices over ``world_size`` ranks, and each slice into equal micro-batches of
    ``micro_batch_size`` (``RunConfig.check_micro_batch``)."""
    if cfg.data.batch_size % world_size:
        raise ConfigError(
            "batch_size",
            cfg.data.batch_size,
            f"a multiple of world_size={world_size} (each rank takes an equal slice)",
        )
    for _, batch in cfg.data.batch_ramp or ():
        if batch % world_size:
            raise ConfigError(
                "batch_ramp",
                cfg.data.batch_ramp,
                f"stages whose batches are multiples of world_size={world_size} (each rank "
                f"takes an equal slice; {batch} is not)",
            )
    cfg.check_micro_batch(world_size)


def _split(tokens: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    # The validation split is the tail, so no training window overlaps it.
    n_val = int(len(tokens) * val_frac)
    return tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]


def _check_ids(tokens: np.ndarray, vocab_size: int, name: str) -> None:
    if tokens.dtype == np.uint8 and vocab_size >= 256:
        return  # bytes always fit; skip a full pass over a large file
    top = int(tokens.max()) if len(tokens) else 0
    if top >= vocab_size:
        raise DataError(
            f"{name}: token id {top} is >= vocab_size={vocab_size}; "
            f"raise vocab_size to at least {top + 1}"
        )


def _load_bin(path: Path, vocab_size: int) -> np.ndarray:
    if path.stat().st_size == 0:
        raise DataError(f"data={str(path)!r}: the file is empty")
    if path.stat().st_size % 2:
        raise DataError(
            f"data={str(path)!r}: {path.stat().st_size} bytes is not a whole number "
            "of uint16 tokens (a nanoGPT .bin holds uint16 ids)"
        )
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    _check_ids(tokens, vocab_size, f"data={str(path)!r}")
    return tokens


def load_tokens(cfg: RunConfig) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(train tokens, val tokens, name) for the data source: builtin, a text file, a .bin or a
    folder."""
    source, vocab, val_frac = cfg.data.source, cfg.model.vocab_size, cfg.data.val_frac
    if source == "builtin":
        tokens = np.frombuffer(builtin_corpus(), dtype=np.uint8)
        name = "builtin corpus"
    else:
        path = Path(source).expanduser()
        name = f"data={source!r}"
        if path.is_dir():
            train_p, val_p = path / "train.bin", path / "val.bin"
            if not train_p.is_file():
                raise DataError(f"{name}: a folder must hold train.bin (and optionally val.bin)")
            train = _load_bin(train_p, vocab)
            val = _load_bin(val_p, vocab) if val_p.is_file() else None
            if val is None:
                train, val = _split(train, val_frac)
            return train, val, name
        if not path.is_file():
            raise DataError(
                f"{name}: no such file; give 'builtin', 'teacher', a UTF-8 text "
                "file, a uint16 .bin file, or a folder with train.bin/val.bin"
            )
        if path.suffix == ".bin":
            tokens = _load_bin(path, vocab)
        else:
            if path.stat().st_size == 0:
                raise DataError(f"{name}: the file is empty")
            # Bytes are the tokens; a memmap keeps a large text file out of memory.
            tokens = np.memmap(path, dtype=np.uint8, mode="r")
    _check_ids(tokens, vocab, name)
    train, val = _split(tokens, val_frac)
    return train, val, name


def make_data(cfg: RunConfig, rank: int = 0, world_size: int = 1) -> DataSource:
    """The data source cfg describes, serving this rank's slice of each global batch: the
    teacher task for a family whose data is "teacher" (the MLP), tokens otherwise."""
    source, family = cfg.data.source, cfg.model.name
    teacher_family = get_model(family).data == "teacher"
    teacher = source == "teacher" or (teacher_family and source == "builtin")
    if teacher_family and not teacher:
        raise ConfigError("data", source, f"'teacher' (or 'builtin') for model={family!r}")
    if not teacher_family and teacher:
        raise ConfigError("data", source, f"'builtin', a text file or a .bin for model={family!r}")
    if teacher:
        return TeacherSource(cfg, rank, world_size)
    train, val, name = load_tokens(cfg)
    return TokenSource(cfg, train, val, rank, world_size, name=name)
