"""Loading scaling-law data: CSV, Parquet, JSON / JSON lines, or a sizeup study (SQLite).

Everything becomes a pandas DataFrame; the fit functions then take columns by name, so a
user's own column names work through `--params-col`, `--tokens-col` and friends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sizeup.config import RunConfig, read_document
from sizeup.errors import DataError, SizeupError, StoreError
from sizeup.sweep.store import Store

# column names tried, in order, when the user names none
GUESSES: dict[str, tuple[str, ...]] = {
    "params": ("params", "N", "n_params", "N_params", "num_params", "parameters", "model_size"),
    "tokens": ("tokens", "D", "D_tokens", "n_tokens", "num_tokens", "token_num", "data"),
    "flops": ("flops", "C", "compute", "FLOPs", "flops_6ND"),
    "loss": ("loss", "final_val_loss", "val_loss", "L", "final_loss", "eval_loss"),
    "lr": ("lr", "learning_rate", "eta", "peak_lr"),
    "batch": ("batch_tokens", "batch", "batch_size", "B"),
    "unique": ("unique_tokens", "U", "U_unique_tokens", "tokens_per_epoch"),
}


def load_table(path: str | Path, include_diverged: bool = False) -> pd.DataFrame:
    """Read a .csv, .parquet, .json, .jsonl or sizeup study (.db/.sqlite) into a DataFrame."""
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"data={str(p)!r} is not allowed: an existing .csv, .parquet, .json, .jsonl or study .db file"
        )
    suffix = p.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif suffix == ".jsonl":
            df = pd.read_json(p, lines=True)
        elif suffix == ".json":
            df = _read_json(p)
        elif suffix in (".db", ".sqlite", ".sqlite3") or _is_sqlite(p):
            df = load_study(p, include_diverged=include_diverged)
        else:
            raise DataError(
                f"data={str(p)!r} is not allowed: a .csv, .parquet, .json, .jsonl or study .db file"
            )
    except (ValueError, OSError) as e:
        if isinstance(e, SizeupError):  # already names the file and what is wrong
            raise
        raise DataError(f"data={str(p)!r} is not allowed: a readable table ({e})") from e
    if df.empty:
        raise DataError(f"data={str(p)!r} is not allowed: a table with at least one row")
    return df


def _is_sqlite(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _read_json(p: Path) -> pd.DataFrame:
    """A list of records, a dict of columns, or {"points": [...]}."""
    data = read_document(p, "data", (".json",))
    if isinstance(data, dict) and "points" in data:
        data = data["points"]
    return pd.DataFrame(data)


def load_study(path: str | Path, include_diverged: bool = False) -> pd.DataFrame:
    """Flatten a sizeup study: one row per finished trial with params, tokens, loss, flops, lr,
    batch (tokens per step) and every config field under `config.<name>`.

    Read through ``Store.to_frame`` (sizeup.sweep.store: the one reader of a study's rows).
    Diverged or failed trials are left out unless include_diverged=True; the count left out is
    kept in `df.attrs["skipped"]` so callers can say so.
    """
    try:
        with Store(path, readonly=True) as st:
            frame = st.to_frame()
    except StoreError as e:
        raise DataError(f"study={str(path)!r} is not allowed: {e}") from e
    frame = frame[frame["params"].notna()] if "params" in frame else frame.iloc[0:0]
    skipped = 0
    if len(frame) and not include_diverged:  # the trials with a result, without the diverged
        bad = frame["diverged"].astype(bool) | ~np.isfinite(frame["loss"].astype(float))
        frame, skipped = frame[~bad], int(bad.sum())
    df = _study_rows(frame) if len(frame) else pd.DataFrame()
    df.attrs["skipped"] = skipped
    if df.empty:
        raise DataError(
            f"study={str(path)!r} is not allowed: at least one finished, non-diverged trial "
            f"({skipped} diverged or unfinished)"
        )
    return df


def _study_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The finished trials as rows: their result's numbers, lr, batch in tokens, steps and
    every config field (flat name) as `config.<name>`."""
    loss = frame["loss"].astype(float)
    out = pd.DataFrame(
        {
            "params": frame.get("params"),
            "tokens": frame.get("tokens"),
            "loss": loss.where(np.isfinite(loss), None),
            "flops": frame.get("flops"),
            "lr": frame.get("lr"),
            "batch_tokens": frame.get("tokens_per_step"),
            "steps": frame.get("steps"),
            "diverged": frame.get("diverged"),
        }
    )
    config = pd.DataFrame({f"config.{k}": frame[k] for k in RunConfig.field_names() if k in frame})
    return pd.concat([out, config], axis=1).reset_index(drop=True)


def pick_column(
    df: pd.DataFrame, role: str, name: str | None = None, required: bool = True
) -> str | None:
    """The column to use for `role` (params, tokens, flops, loss, lr, batch, unique): the one the
    user named, else the first of GUESSES present."""
    if name is not None:
        if name not in df.columns:
            raise DataError(
                f"{role}-col={name!r} is not allowed: one of the columns {list(df.columns)}"
            )
        return name
    for guess in GUESSES.get(role, ()):
        if guess in df.columns:
            return guess
    if required:
        raise DataError(
            f"{role}-col=None is not allowed: no column named like {list(GUESSES.get(role, ()))}; "
            f"name one of {list(df.columns)} with --{role}-col"
        )
    return None


def points(
    df: pd.DataFrame,
    params_col: str | None = None,
    tokens_col: str | None = None,
    flops_col: str | None = None,
    loss_col: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, L, C) arrays from a table; D = C / (6N) when only FLOPs are given, C = 6ND when
    only tokens are. Rows with a missing value raise rather than vanish."""
    n_col = pick_column(df, "params", params_col)
    l_col = pick_column(df, "loss", loss_col)
    if tokens_col is not None and flops_col is not None:
        raise DataError("tokens-col and flops-col are not allowed together: give one of them")
    t_col = pick_column(df, "tokens", tokens_col, required=False) if flops_col is None else None
    f_col = pick_column(df, "flops", flops_col, required=t_col is None) if t_col is None else None
    N = _numeric(df, n_col)
    L = _numeric(df, l_col)
    if t_col is not None:
        D = _numeric(df, t_col)
        C = 6.0 * N * D
    else:
        C = _numeric(df, f_col)
        D = C / (6.0 * N)
    return N, D, L, C


def _numeric(df: pd.DataFrame, col: str) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(v)
    if bad.any():
        raise DataError(
            f"{col}: missing or non-numeric values at rows {np.flatnonzero(bad)[:5].tolist()} "
            "are not allowed: filter them out first"
        )
    return v
