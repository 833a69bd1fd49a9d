"""The study store: one SQLite file per study (WAL mode), one row per trial.

Drivers write (their workers hand results back to them); readers such as `sizeup transfer` can
open the file while sweeps run. A trial's id is RunConfig.trial_id(), so adding the same spec
twice adds nothing and a finished trial is never queued again.

Any number of drivers on one machine may share a study: a driver *claims* a queued trial with
one conditional UPDATE (queued -> running), so no two drivers run the same trial, and holds a
*lease* on what it runs by renewing a heartbeat every few seconds (``Lease``). A running trial
whose lease has expired (its driver was killed, its container is gone, its PID now belongs to
another process) is put back in the queue, whatever host or PID it names; a trial of a driver
that has exited on this host is put back at once. SQLite over a network file system is not safe
for this (its locks are unreliable there): to spread a study over many machines use the Ray
executor, with one driver.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sizeup.config import RunConfig, RunResult
from sizeup.errors import ConfigError, SizeupError, StoreError

STATUSES = ("queued", "running", "done", "diverged", "failed")
FINISHED = ("done", "diverged")
UNFINISHED = ("queued", "running")
# A running trial whose driver has not renewed its heartbeat for this long is re-queued.
LEASE_S = 60.0

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
    owner TEXT,                   -- host:pid of the driver that claimed it
    heartbeat REAL                -- last time that driver renewed its lease on the trial
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


def _trial(r: tuple) -> Trial:
    """A Trial from a row of Store._COLUMNS."""
    return Trial(
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


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(owner: str | None) -> bool:
    """True when ``owner`` names a driver process on this host that no longer exists (its
    trials need not wait for their lease to expire). Anything else waits for the lease."""
    if not owner or ":" not in owner:
        return True
    host, pid_s = owner.rsplit(":", 1)
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    if int(pid_s) == os.getpid():
        return False  # this very driver
    try:
        os.kill(int(pid_s), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _damaged(path: Path, why: str) -> str:
    return (
        f"store={str(path)!r} is damaged or not a SQLite study file ({why}): nothing was run; "
        "`sizeup sweep SPEC --store FILE --export OUT.csv` salvages the trials still readable"
    )


def _ro_uri(path: Path) -> str:
    """A read-only SQLite URI for ``path``; quoted, so '#' or '?' in a name stay part of it."""
    return "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"


class Store:
    """A SQLite-backed study: add trials, claim them, record results, export.

    ``readonly=True`` opens an existing study without ever writing (readers: transfer, fits,
    the planner). Every open checks the file's integrity (PRAGMA quick_check) and names the
    damage instead of failing later on a half-read table; ``check=False`` skips that, for
    salvaging what is still readable (``salvage``).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, check: bool = True):
        self.path = Path(path)
        if self.path.suffix.lower() in (".csv", ".parquet", ".json"):
            raise ConfigError("store", str(self.path), "a SQLite file path such as study.db")
        if readonly and not self.path.is_file():
            raise StoreError(
                f"store={str(self.path)!r} does not exist: a study file written by sweep"
            )
        try:
            self._db = self._connect(readonly)
            if check:
                self._check_integrity()
        except OSError as e:
            raise StoreError(f"store={str(self.path)!r} cannot be created: {e.strerror}") from None
        except sqlite3.OperationalError as e:
            if "unable to open" not in str(e):
                raise StoreError(_damaged(self.path, str(e))) from None
            raise StoreError(
                f"store={str(self.path)!r} cannot be opened ({e}): a writable file path"
            ) from None
        except sqlite3.DatabaseError as e:
            raise StoreError(_damaged(self.path, str(e))) from None

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly:  # readers neither create files nor add tables to someone's SQLite
            db = sqlite3.connect(_ro_uri(self.path), uri=True, timeout=30.0)
            try:
                db.execute("SELECT id, seq, status, config, result FROM trials LIMIT 1")
            except sqlite3.OperationalError as e:
                db.close()
                raise StoreError(
                    f"store={str(self.path)!r} is not a sizeup study (a SQLite file with a "
                    f"trials table): {e}"
                ) from None
            return db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: wait for another driver's write lock instead of failing at once
        db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode (only power loss can drop the
        # last commit), and it keeps per-trial overhead low
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        columns = {r[1] for r in db.execute("PRAGMA table_info(trials)")}
        if "heartbeat" not in columns:  # a study written before leases existed
            db.execute("ALTER TABLE trials ADD COLUMN heartbeat REAL")
        return db

    def _check_integrity(self) -> None:
        problems = [r[0] for r in self._db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            more = f"; {len(problems) - 1} more problems" if len(problems) > 1 else ""
            raise StoreError(_damaged(self.path, problems[0] + more))

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
            self._db.execute("BEGIN IMMEDIATE")  # a writer from the start: no upgrade deadlock
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

    def requeue_stale(
        self, lease_s: float = LEASE_S, *, force: bool = False, retry_failed: bool = False
    ) -> int:
        """Put back in the queue the running trials whose lease expired (no heartbeat for
        ``lease_s`` seconds) or whose driver has exited on this host; with ``force`` every
        running trial; with ``retry_failed`` the failed ones too. Returns how many."""
        now = time.time()
        rows = self._db.execute(
            "SELECT id, owner, COALESCE(heartbeat, started, created) FROM trials "
            "WHERE status='running'"
        ).fetchall()
        ids = [tid for tid, owner, beat in rows if force or now - beat > lease_s or _gone(owner)]
        if retry_failed:
            ids += [r[0] for r in self._db.execute("SELECT id FROM trials WHERE status='failed'")]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for tid in ids:
                self._db.execute("UPDATE trials SET status='queued', owner=NULL WHERE id=?", (tid,))
        return len(ids)

    def queued(self) -> list[RunConfig]:
        """Configs of queued trials, in the order they were added."""
        rows = self._db.execute(
            "SELECT config FROM trials WHERE status='queued' ORDER BY seq"
        ).fetchall()
        return [RunConfig.from_dict(json.loads(r[0])) for r in rows]

    def claim(self, trial_id: str) -> bool:
        """Take a queued trial for this driver (running, attempts + 1, lease started) in one
        conditional UPDATE: True when this driver got it, False when another driver did."""
        now = time.time()
        cur = self._db.execute(
            "UPDATE trials SET status='running', started=?, heartbeat=?, attempts=attempts+1, "
            "owner=? WHERE id=? AND status='queued'",
            (now, now, _owner(), trial_id),
        )
        return cur.rowcount == 1

    def retried(self, trial_id: str) -> None:
        """Count one more attempt of a running trial (its worker died and it runs again)."""
        self._db.execute(
            "UPDATE trials SET attempts=attempts+1, heartbeat=? WHERE id=?", (time.time(), trial_id)
        )

    def unfinished(self, ids: set[str] | None = None) -> dict[str, int]:
        """{'queued': n, 'running': m} among ``ids`` (every trial when None)."""
        out = dict.fromkeys(UNFINISHED, 0)
        for tid, status in self._db.execute(
            "SELECT id, status FROM trials WHERE status IN ('queued', 'running')"
        ):
            if ids is None or tid in ids:
                out[status] += 1
        return out

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
        # Only the driver that holds the trial (or nobody) records it: a driver whose lease
        # expired while it was paused must not overwrite the run of the driver that took over.
        cur = self._db.execute(
            "UPDATE trials SET status=?, result=?, error=?, loss=?, finished=?, wall_time=?, "
            "owner=NULL WHERE id=? AND (owner IS NULL OR owner=?)",
            (
                status,
                payload,
                error,
                loss if math.isfinite(loss) else None,
                time.time(),
                wall_time,
                trial_id,
                _owner(),
            ),
        )
        if cur.rowcount == 0:
            row = self._db.execute("SELECT status FROM trials WHERE id=?", (trial_id,)).fetchone()
            return row[0] if row else status
        return status

    # --- reading -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Number of trials per status (every status present, zeros included)."""
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"):
            out[status] = n
        return out

    _COLUMNS = "id, status, config, result, error, loss, started, finished, wall_time, attempts"

    def trials(
        self, status: str | tuple[str, ...] | None = None, *, salvage: bool = False
    ) -> list[Trial]:
        """Stored trials (optionally only some statuses), in insertion order. ``salvage``
        reads row by row and skips the rows a damaged file cannot give back (counted in
        ``self.unreadable``) instead of failing on the first one."""
        sts = None if status is None else ((status,) if isinstance(status, str) else tuple(status))
        rows = (
            self._rows_salvaged()
            if salvage
            else self._db.execute(f"SELECT {self._COLUMNS} FROM trials ORDER BY seq")
        )
        return [t for t in map(_trial, rows) if sts is None or t.status in sts]

    def _rows_salvaged(self) -> list[tuple]:
        self.unreadable = 0
        try:
            top = self._db.execute("SELECT MAX(rowid) FROM trials").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            top = 100_000
        rows = []
        for rowid in range(1, top + 1):
            try:
                r = self._db.execute(
                    f"SELECT {self._COLUMNS} FROM trials WHERE rowid=?", (rowid,)
                ).fetchone()
                if r is not None:
                    _trial(r)  # decodes, or raises on a damaged payload
                    rows.append(r)
            except (sqlite3.DatabaseError, ValueError, TypeError, SizeupError):
                self.unreadable += 1
        return rows

    def get(self, trial_id: str) -> Trial:
        """One trial by id (StoreError when absent)."""
        for t in self.trials():
            if t.id == trial_id:
                return t
        raise StoreError(f"trial id={trial_id!r} is not in store={str(self.path)!r}")

    def __len__(self) -> int:
        return self._count()

    def to_frame(self, curves: bool = False, *, salvage: bool = False) -> Any:
        """The study as a pandas DataFrame, one row per trial: id, status, every config field
        (flat names), ``tokens_per_step`` (the batch in tokens), and the result's numbers. The
        one reader of a study's rows: transfer, the demo, `sizeup fit` and exports go through it.

        With curves=True the train/val loss curves come along as list columns.
        """
        import pandas as pd

        rows = []
        for t in self.trials(salvage=salvage):
            row: dict[str, Any] = {
                "id": t.id,
                "status": t.status,
                "attempts": t.attempts,
                "wall_time": t.wall_time,
                "error": t.error,
                "loss": t.loss,
            }
            row.update(t.config.to_dict())
            row["tokens_per_step"] = t.config.tokens_per_step
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

    to_dataframe = to_frame  # its 0.1 name

    def export(self, path: str | Path, curves: bool = False, *, salvage: bool = False) -> Path:
        """Write the table to .csv or .parquet (chosen by suffix); return the path."""
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise ConfigError("export", str(p), "a path ending in .csv or .parquet")
        df = self.to_frame(curves=curves, salvage=salvage)
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


class Lease:
    """Keeps this driver's claim on its running trials alive: a daemon thread renews their
    heartbeat every ``lease_s / 4`` seconds on its own connection (SQLite connections stay in
    their thread). Use as a context manager around the work."""

    def __init__(self, path: str | Path, lease_s: float = LEASE_S):
        self.path, self.every = Path(path), max(0.05, lease_s / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="sizeup-lease")

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        try:
            while not self._stop.wait(self.every):
                try:
                    db.execute(
                        "UPDATE trials SET heartbeat=? WHERE owner=? AND status='running'",
                        (time.time(), _owner()),
                    )
                except sqlite3.OperationalError:  # busy for 30 s: try again next beat
                    continue
        finally:
            db.close()
