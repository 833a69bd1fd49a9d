"""The study store: one SQLite file per study (WAL mode), one row per trial.

Only the sweep driver writes (workers hand results back to it), so there is a single writer and
readers such as `sizeup transfer` can open the file while a sweep runs. A trial's id is
RunConfig.trial_id(), so adding the same spec twice adds nothing and a finished trial is never
queued again. A trial left 'running' by a killed driver is put back in the queue on resume.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizeup.config import RunConfig, RunResult
from sizeup.errors import ConfigError, StoreError

STATUSES = ("queued", "running", "done", "diverged", "failed")
FINISHED = ("done", "diverged")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY,          -- RunConfig.trial_id(): a hash of the config
    seq INTEGER NOT NULL,         -- insertion order, so trials run in spec order
    status TEXT NOT NULL,         -- queued / running / done / diverged / failed
    config TEXT NOT NULL,         -- RunConfig.to_dict() as JSON
    result TEXT,                  -- RunResult.to_dict() as JSON (with the loss curve)
    error TEXT,
    loss REAL,                    -- RunResult.loss, duplicated for quick queries
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    wall_time REAL,               -- seconds the runner took (as measured by the driver)
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT                    -- host:pid of the driver that claimed it
);
CREATE INDEX IF NOT EXISTS trials_status ON trials(status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Trial:
    """One stored trial row, with config and result rebuilt as records."""

    id: str
    status: str
    config: RunConfig
    result: RunResult | None
    error: str | None
    loss: float
    started: float | None
    finished: float | None
    wall_time: float | None
    attempts: int


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None) -> bool:
    """True when the driver that claimed a trial still runs on this host (signal 0 probe)."""
    if not owner or ":" not in owner:
        return False
    host, pid_s = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return True  # another host's driver: we cannot tell, so leave its trials alone
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # our own leftovers from an earlier session in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """A SQLite-backed study: add trials, claim them, record results, export. With
    readonly=True it only reads an existing study (every reader goes through here)."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if self.path.suffix.lower() in (".csv", ".parquet", ".json"):
            raise ConfigError("store", str(self.path), "a SQLite file path such as study.db")
        if readonly:
            self._db = self._open_readonly()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # timeout: wait for a reader's lock instead of failing at once
            self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode (only power loss can drop
            # the last commit), and it keeps per-trial overhead low
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"store={str(self.path)!r} is not a usable SQLite study file: {e}"
            ) from None

    def _open_readonly(self) -> sqlite3.Connection:
        """A read-only connection to an existing study (readers such as `sizeup fit` and
        `sizeup plan --from-study` neither create files nor add tables to someone's SQLite)."""
        if not self.path.exists():
            raise StoreError(f"store={str(self.path)!r} is not an existing study file")
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)
            db.execute("SELECT id, seq, status, config, result FROM trials LIMIT 1")
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"store={str(self.path)!r} is not a sizeup study (a SQLite file with a trials "
                f"table): {e}"
            ) from None
        return db

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under key (e.g. the sweep spec)."""
        self._db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        """Read a value stored by set_meta."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # --- queue ---------------------------------------------------------------------------
    def add(self, configs: list[RunConfig]) -> int:
        """Queue trials not already stored; return how many were new."""
        now = time.time()
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            seq0 = self._db.execute("SELECT COALESCE(MAX(seq), -1) FROM trials").fetchone()[0]
            before = self._count()
            for i, cfg in enumerate(configs):
                self._db.execute(
                    "INSERT OR IGNORE INTO trials(id, seq, status, config, created) "
                    "VALUES (?, ?, 'queued', ?, ?)",
                    (cfg.trial_id(), seq0 + 1 + i, json.dumps(cfg.to_dict()), now),
                )
            return self._count() - before

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]

    def requeue_interrupted(self, retry_failed: bool = False) -> int:
        """Put 'running' trials whose driver is gone (and failed ones if asked) back in the queue."""
        rows = self._db.execute("SELECT id, owner FROM trials WHERE status='running'").fetchall()
        ids = [tid for tid, owner in rows if not _owner_alive(owner)]
        if retry_failed:
            ids += [r[0] for r in self._db.execute("SELECT id FROM trials WHERE status='failed'")]
        with self._db:
            self._db.execute("BEGIN")
            for tid in ids:
                self._db.execute("UPDATE trials SET status='queued', owner=NULL WHERE id=?", (tid,))
        return len(ids)

    def queued(self) -> list[RunConfig]:
        """Configs of queued trials, in the order they were added."""
        rows = self._db.execute(
            "SELECT config FROM trials WHERE status='queued' ORDER BY seq"
        ).fetchall()
        return [RunConfig.from_dict(json.loads(r[0])) for r in rows]

    def mark_running(self, trial_id: str) -> None:
        """Claim a trial for this driver: status running, attempts + 1."""
        self._db.execute(
            "UPDATE trials SET status='running', started=?, attempts=attempts+1, owner=? "
            "WHERE id=?",
            (time.time(), _owner(), trial_id),
        )

    def record(
        self,
        trial_id: str,
        result: RunResult | None = None,
        error: str | None = None,
        wall_time: float | None = None,
    ) -> str:
        """Store a finished trial's result (done/diverged) or error (failed); return its status."""
        if result is not None:
            status = "diverged" if result.diverged else "done"
            loss = result.loss
            payload = json.dumps(result.to_dict(), allow_nan=False)
            error = error or result.error
        else:
            status, loss, payload = "failed", math.nan, None
        self._db.execute(
            "UPDATE trials SET status=?, result=?, error=?, loss=?, finished=?, wall_time=?, "
            "owner=NULL WHERE id=?",
            (
                status,
                payload,
                error,
                loss if math.isfinite(loss) else None,
                time.time(),
                wall_time,
                trial_id,
            ),
        )
        return status

    # --- reading -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Number of trials per status (every status present, zeros included)."""
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"):
            out[status] = n
        return out

    def trials(self, status: str | tuple[str, ...] | None = None) -> list[Trial]:
        """Stored trials (optionally only some statuses), in insertion order."""
        q = (
            "SELECT id, status, config, result, error, loss, started, finished, wall_time, "
            "attempts FROM trials"
        )
        args: tuple = ()
        if status is not None:
            sts = (status,) if isinstance(status, str) else tuple(status)
            q += " WHERE status IN (" + ",".join("?" * len(sts)) + ")"
            args = sts
        out = []
        for r in self._db.execute(q + " ORDER BY seq", args):
            out.append(
                Trial(
                    id=r[0],
                    status=r[1],
                    config=RunConfig.from_dict(json.loads(r[2])),
                    result=RunResult.from_dict(json.loads(r[3])) if r[3] else None,
                    error=r[4],
                    loss=math.nan if r[5] is None else r[5],
                    started=r[6],
                    finished=r[7],
                    wall_time=r[8],
                    attempts=r[9],
                )
            )
        return out

    def get(self, trial_id: str) -> Trial:
        """One trial by id (StoreError when absent)."""
        for t in self.trials():
            if t.id == trial_id:
                return t
        raise StoreError(f"trial id={trial_id!r} is not in store={str(self.path)!r}")

    def __len__(self) -> int:
        return self._count()

    def to_dataframe(self, curves: bool = False) -> Any:
        """A pandas DataFrame, one row per trial: id, status, every config field, result numbers.

        With curves=True the train/val loss curves come along as list columns.
        """
        import pandas as pd

        rows = []
        for t in self.trials():
            row: dict[str, Any] = {
                "id": t.id,
                "status": t.status,
                "attempts": t.attempts,
                "wall_time": t.wall_time,
                "error": t.error,
                "loss": t.loss,
            }
            row.update(t.config.to_dict())
            if t.result is not None:
                r = t.result
                row.update(
                    final_val_loss=r.final_val_loss,
                    final_train_loss=r.final_train_loss,
                    initial_val_loss=r.initial_val_loss,
                    tokens=r.tokens,
                    flops=r.flops,
                    params=r.params,
                    tokens_per_s=r.tokens_per_s,
                    diverged=r.diverged,
                    diverged_step=r.diverged_step,
                )
                if curves:
                    row.update(
                        steps=r.steps,
                        train_loss=r.train_loss,
                        val_steps=r.val_steps,
                        val_loss=r.val_loss,
                    )
            rows.append(row)
        return pd.DataFrame(rows)

    def export(self, path: str | Path, curves: bool = False) -> Path:
        """Write the table to .csv or .parquet (chosen by suffix); return the path."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise ConfigError("export", str(p), "a path ending in .csv or .parquet")
        df = self.to_dataframe(curves=curves)
        if suffix == ".csv":
            if curves:  # CSV has no list type: keep the curves as JSON text
                for c in ("steps", "train_loss", "val_steps", "val_loss"):
                    if c in df:
                        df[c] = df[c].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
            df.to_csv(p, index=False)
        else:
            try:
                df.to_parquet(p, index=False)
            except ImportError as e:
                raise ConfigError(
                    "export", str(p), f"a .csv path, or install pyarrow for Parquet ({e})"
                ) from None
        return p
