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

import dataclasses
import functools
import json
import math
import os
import shlex
import socket
import sqlite3
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sizeup.config import RunConfig, RunResult
from sizeup.errors import ConfigError, SizeupError, StoreError, StoreWarning

STATUSES = ("queued", "running", "done", "diverged", "failed")
FINISHED = ("done", "diverged")
UNFINISHED = ("queued", "running")
# A running trial whose driver has not renewed its heartbeat for this long is re-queued.
LEASE_S = 60.0
# How long a store waits for another process's lock before naming that process (seconds).
BUSY_S = 30.0

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
# the columns a table named `trials` must have to be a sizeup study's
_STUDY_COLUMNS = {"id", "seq", "status", "config", "result"}


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


# --- decoding a row: the one place a stored row is checked ------------------------------------
class _BadColumn(Exception):
    """A column holding what sizeup never writes there (internal: becomes a _BadRow)."""

    def __init__(self, column: str, why: str):
        super().__init__(f"its {column} {why}")
        self.column = column


class _BadRow(Exception):
    """A row that does not decode: which row, which column, why."""

    def __init__(self, rowid: Any, trial_id: Any, bad: _BadColumn):
        self.rowid, self.trial_id, self.column = rowid, trial_id, bad.column
        super().__init__(f"rowid {rowid}, trial id={_short(trial_id)}: {bad}")


def _short(value: Any, n: int = 40) -> str:
    """repr of a stored value, cut to n characters (a damaged row may hold kilobytes)."""
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _is_number(v: Any) -> bool:
    """A real number as SQLite or JSON gives one (bools are not numbers here); ints beyond
    int64 are not (a pandas column of them is an object column the analyses cannot use)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return not isinstance(v, int) or abs(v) < 2**63


# What each RunResult field's stored JSON may hold, by the field's annotation (a new field
# with a new type fails at import, here, rather than slipping through unchecked).
_SHAPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "float": ("a number", lambda v: v is None or _is_number(v)),
    "int": ("a number", _is_number),
    "int | None": ("a number or null", lambda v: v is None or _is_number(v)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("text", lambda v: isinstance(v, str)),
    "str | None": ("text or null", lambda v: v is None or isinstance(v, str)),
    "dict[str, Any]": ("an object", lambda v: isinstance(v, dict)),
    "list[int]": ("a list of numbers", lambda v: _numbers(v, none=False)),
    "list[float]": ("a list of numbers", lambda v: _numbers(v, none=True)),
}


def _numbers(v: Any, none: bool) -> bool:
    return isinstance(v, list) and all(_is_number(x) or (none and x is None) for x in v)


_RESULT_SHAPES = {f.name: _SHAPES[str(f.type)] for f in dataclasses.fields(RunResult)}


def _json_object(text: Any, column: str) -> dict[str, Any]:
    """A JSON object column's value, decoded."""
    if not isinstance(text, str):
        raise _BadColumn(column, f"holds {_short(text)}, not JSON text")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise _BadColumn(column, f"holds {_short(text)}, not valid JSON") from None
    if not isinstance(value, dict):
        raise _BadColumn(column, f"holds {_short(value)}, not a JSON object")
    return value


def _config(text: Any) -> RunConfig:
    """The config column as a RunConfig (every field checked by RunConfig itself)."""
    d = _json_object(text, "config")
    try:
        return RunConfig.from_dict(d)
    except (SizeupError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        raise _BadColumn("config", f"is not a run config ({_short(str(e), 120)})") from None


def _result(text: Any, status: str) -> RunResult | None:
    """The result column as a RunResult: each field of the JSON the type RunResult has. A
    finished trial (done/diverged) always has one."""
    if text is None:
        if status in FINISHED:
            raise _BadColumn("result", f"is empty, though the trial is {status}")
        return None
    d = _json_object(text, "result")
    for key, value in d.items():
        if key not in _RESULT_SHAPES:
            raise _BadColumn("result", f"has a field {_short(key)} a run result does not have")
        what, ok = _RESULT_SHAPES[key]
        if not ok(value):
            raise _BadColumn("result", f"field {key} is {_short(value)}, not {what}")
    if "config" not in d:
        raise _BadColumn("result", "has no config field")
    return RunResult.from_dict(d)


def _scalar(value: Any, column: str, kind: str) -> Any:
    """A plain column's value: 'number' (or NULL), 'count' (an integer >= 0), 'text' (or NULL)."""
    if kind == "text" and (value is None or isinstance(value, str)):
        return value
    if kind == "number" and (value is None or _is_number(value)):
        return value
    if kind == "count" and isinstance(value, int) and value >= 0:
        return value
    allowed = {"number": "a number", "count": "a count >= 0", "text": "text"}[kind]
    raise _BadColumn(column, f"holds {_short(value)}, not {allowed}")


def _trial(r: tuple) -> Trial:
    """A Trial from a row of Store._COLUMNS (rowid last); _BadRow names the first column that
    holds something sizeup never writes there."""
    try:
        if not isinstance(r[0], str) or not r[0]:
            raise _BadColumn("id", f"holds {_short(r[0])}, not a trial id")
        if r[1] not in STATUSES:
            raise _BadColumn("status", f"holds {_short(r[1])}, not one of {', '.join(STATUSES)}")
        loss = _scalar(r[5], "loss", "number")
        return Trial(
            id=r[0],
            status=r[1],
            config=_config(r[2]),
            result=_result(r[3], r[1]),
            error=_scalar(r[4], "error", "text"),
            loss=math.nan if loss is None else float(loss),
            started=_scalar(r[6], "started", "number"),
            finished=_scalar(r[7], "finished", "number"),
            wall_time=_scalar(r[8], "wall_time", "number"),
            attempts=_scalar(r[9], "attempts", "count"),
        )
    except _BadColumn as bad:
        raise _BadRow(r[10], r[0], bad) from None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(owner: Any) -> bool:
    """True when ``owner`` names a driver process on this host that no longer exists (its
    trials need not wait for their lease to expire), or names none at all (a damaged row).
    Anything else waits for the lease."""
    if not isinstance(owner, str) or ":" not in owner:
        return True
    host, pid_s = owner.rsplit(":", 1)
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    if int(pid_s) == os.getpid():
        return False  # this very driver
    try:
        os.kill(int(pid_s), 0)
    except (ProcessLookupError, OverflowError):  # no such process; a PID no process can have
        return True
    except PermissionError:
        return False
    return False


def _expired(beat: Any, now: float, lease_s: float) -> bool:
    """A lease not renewed for lease_s seconds; a heartbeat that is no time (a damaged row)
    counts as expired."""
    return not _is_number(beat) or now - beat > lease_s


SALVAGE = "`sizeup sweep SPEC --store {path} --export OUT.csv` salvages the trials still readable"


def _damaged(path: Path, why: str) -> str:
    return (
        f"store={str(path)!r} is damaged or not a SQLite study file ({why}): nothing was run; "
        + SALVAGE.format(path=shlex.quote(str(path)))
    )


def _short_by(db: sqlite3.Connection, path: Path) -> int:
    """How many bytes a half-copied (truncated) file lacks: its header names more pages than
    the file holds, and SQLite reads the missing ones as zeros, which PRAGMA quick_check does
    not see. 0 when it cannot tell: a -wal beside it with frames may hold those pages.

    SQLite's own page count (from the header, when its change counter says it is valid)
    against the file's size from stat: the file is never opened here, as closing another
    descriptor of it would drop this process's SQLite locks on it. Read twice when short, so a
    writer checkpointing between the reads is not taken for damage."""
    for _ in range(2):
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
        size = _size(path)
        if _size(Path(f"{path}-wal")) > 0 or pages * page <= size:
            return 0
        time.sleep(0.05)
    return pages * page - size


def _size(path: Path) -> int:
    """A file's size; 0 when it is not there (a -wal its last connection just removed)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _ro_uri(path: Path) -> str:
    """A read-only SQLite URI for ``path``; quoted, so '#' or '?' in a name stay part of it.

    A reader creates no file beside the study: with no -wal file there (no writer has it open,
    and the last one folded its -wal into the file), ``immutable=1`` reads the file alone,
    without the -wal and -shm files that ``mode=ro`` creates, and works on a read-only
    location. A writer that opens the study while such a reader reads adds its trials to a new
    -wal; only a checkpoint (1,000 pages of new rows) would change the file under the reader,
    which reads the rows it needs at once. With a -wal there (a sweep is running, or stopped
    without closing), ``mode=ro`` reads through it, using the -shm its writer made."""
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    return uri if Path(f"{path}-wal").exists() else uri + "&immutable=1"


def _named(e: sqlite3.Error, path: Path, writing: bool, timeout: float) -> StoreError:
    """One line for what SQLite said, naming the file and what to do."""
    code, text, where = getattr(e, "sqlite_errorname", "") or "", str(e), f"store={str(path)!r}"
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "is locked" in text:
        return StoreError(
            f"{where} is locked by another process (for more than {timeout:g} s: another "
            "driver's long write, or a sqlite3 shell with a transaction open); the trials recorded "
            "so far are kept: run the command again once that process has finished or been "
            "stopped"
        )
    if code == "SQLITE_FULL" or "is full" in text:
        return StoreError(
            f"{where} cannot grow: the disk holding it is full ({text}); nothing was half-"
            "recorded (a trial that could not be recorded runs again): free some space and run "
            "the same command again"
        )
    if code.startswith("SQLITE_READONLY") or "readonly" in text:
        return StoreError(_read_only(path, text))
    if code.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        if writing and path.is_file():  # the file is there: its folder takes no -wal file
            return StoreError(_read_only(path, f"{text}: its folder is read-only"))
        if writing:
            return StoreError(f"{where} cannot be opened ({text}): a writable file path")
        if Path(f"{path}-wal").exists():
            return StoreError(
                f"{where} cannot be opened ({text}): reading its -wal file takes a -shm file "
                "beside it, which this folder does not let SQLite make; copy the study with its "
                "-wal file to a writable folder and read the copy"
            )
        return StoreError(f"{where} cannot be opened ({text}): a readable study file")
    if (
        code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
        or "malformed" in text
        or "not a database" in text
    ):
        return StoreError(_damaged(path, text))
    return StoreError(
        f"{where} could not be used ({text}); " + SALVAGE.format(path=shlex.quote(str(path)))
    )


def _read_only(path: Path, why: str) -> str:
    return (
        f"store={str(path)!r} is read-only ({why}): nothing was changed; readers (transfer, "
        "fit, plan --from-study) still read it; to add trials, copy it to a writable folder "
        "and give --store the copy"
    )


T = TypeVar("T")

# SQLite connections this process holds, per file (device, inode). SQLite's locks are POSIX
# locks, which the kernel drops for the whole process when *any* descriptor of the file is
# closed: a file this process has open in SQLite is never opened by other means here.
_HELD: dict[tuple[int, int], int] = {}
_HELD_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino)


def _hold(path: Path, n: int) -> None:
    """Count a connection this process opened (n=1) or closed (n=-1) on ``path``."""
    try:
        key = _file_key(path)
    except OSError:
        return
    with _HELD_LOCK:
        _HELD[key] = _HELD.get(key, 0) + n
        if _HELD[key] <= 0:
            del _HELD[key]


def _held(path: Path) -> bool:
    try:
        key = _file_key(path)
    except OSError:
        return False
    with _HELD_LOCK:
        return key in _HELD


def _sql(method: Callable[..., T]) -> Callable[..., T]:
    """A Store method whose SQLite errors (locked, full, read-only, damaged) come out as one
    StoreError naming the file and what to do."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise _named(e, self.path, not self.readonly, self.timeout) from None

    return wrapper


class Store:
    """A SQLite-backed study: add trials, claim them, record results, export.

    ``readonly=True`` opens an existing study without ever writing or creating a file
    (readers: transfer, fits, the planner). Every open checks the file's integrity (PRAGMA
    quick_check, and its length against its header) and names the damage instead of failing
    later on a half-read table; ``check=False`` skips that, for salvaging what is still
    readable (``salvage``). Every row read is checked column by column (``_trial``): a writer
    refuses a bad row with a StoreError naming it, a reader leaves it out with one
    StoreWarning. ``timeout``: seconds to wait for another process's lock (BUSY_S).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        check: bool = True,
        timeout: float | None = None,
    ):
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = BUSY_S if timeout is None else float(timeout)
        self.unreadable = 0  # rows a salvaging read could not give back
        self._warned: set[Any] = set()  # rowids a reader has warned about
        if self.path.suffix.lower() in (".csv", ".parquet", ".json"):
            raise ConfigError("store", str(self.path), "a SQLite file path such as study.db")
        if readonly and not self.path.is_file():
            raise StoreError(
                f"store={str(self.path)!r} does not exist: a study file written by sweep"
            )
        try:
            self._db = self._connect(readonly)
        except OSError as e:
            raise StoreError(f"store={str(self.path)!r} cannot be created: {e.strerror}") from None
        except sqlite3.Error as e:
            raise _named(e, self.path, not readonly, self.timeout) from None
        _hold(self.path, 1)
        if check:
            try:
                self._check_integrity()
            except BaseException:
                self.close()
                raise

    def _connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly:  # readers neither create files nor add tables to someone's SQLite
            db = sqlite3.connect(_ro_uri(self.path), uri=True, timeout=self.timeout)
            try:
                db.execute("SELECT id, seq, status, config, result FROM trials LIMIT 1")
            except sqlite3.OperationalError as e:
                db.close()
                if "no such" not in str(e):  # locked, cannot open: named by the caller
                    raise
                raise StoreError(
                    f"store={str(self.path)!r} is not a sizeup study (a SQLite file with a "
                    f"trials table): {e}"
                ) from None
            return db
        self._check_writable()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # timeout: wait for another driver's write lock instead of failing at once
        db = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        try:
            self._check_ours(db)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode (only power loss can drop
            # the last commit), and it keeps per-trial overhead low
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(trials)")}
            if "heartbeat" not in columns:  # a study written before leases existed
                db.execute("ALTER TABLE trials ADD COLUMN heartbeat REAL")
        except BaseException:
            db.close()
            raise
        return db

    def _check_writable(self) -> None:
        """A writer refuses a file it cannot write before SQLite makes -wal/-shm files beside
        it (chattr +i, a read-only mount, a file of another user)."""
        if self.path.is_dir():
            raise StoreError(f"store={str(self.path)!r} is a folder: a study file path")
        if not self.path.exists() or _held(self.path):  # held: this process writes it already
            return
        try:
            os.close(os.open(self.path, os.O_RDWR))
        except OSError as e:
            raise StoreError(_read_only(self.path, e.strerror or str(e))) from None

    def _check_ours(self, db: sqlite3.Connection) -> None:
        """Refuse to add a study's tables to someone else's SQLite file (an empty or new file
        becomes a study)."""
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return
        columns = {r[1] for r in db.execute("PRAGMA table_info(trials)")}
        if not _STUDY_COLUMNS <= columns:
            raise StoreError(
                f"store={str(self.path)!r} is not a sizeup study (a SQLite file with the tables "
                f"{', '.join(sorted(tables))}): sweep writes only to a study, a new or an empty "
                "file; give --store a new file name"
            )

    def _check_integrity(self) -> None:
        try:
            short = _short_by(self._db, self.path)
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check")]
        except sqlite3.Error as e:
            raise _named(e, self.path, not self.readonly, self.timeout) from None
        if short:
            why = (
                f"the file is {short} bytes shorter than its header says: half-copied or truncated"
            )
            raise StoreError(_damaged(self.path, why))
        if problems != ["ok"]:
            more = f"; {len(problems) - 1} more problems" if len(problems) > 1 else ""
            raise StoreError(_damaged(self.path, problems[0] + more))

    def damage(self) -> str | None:
        """What is wrong with the file, or None: its integrity and length (the open's check)
        and every row decoded (a writer's check). `sweep --export` salvages when it finds any."""
        try:
            self._check_integrity()
            self._decoded(self._rows(), strict=True)
        except StoreError as e:
            return str(e)
        return None

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]
            _hold(self.path, -1)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @_sql
    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under key (e.g. the sweep spec)."""
        self._db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value))
        )

    @_sql
    def get_meta(self, key: str, default: Any = None) -> Any:
        """Read a value stored by set_meta."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if not row:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError, RecursionError):
            raise StoreError(
                f"store={str(self.path)!r}: its meta {key!r} holds {_short(row[0])}, not JSON"
            ) from None

    # --- queue ---------------------------------------------------------------------------
    @_sql
    def add(self, configs: list[RunConfig]) -> int:
        """Queue trials not already stored; return how many were new."""
        now = time.time()
        with self._db:  # one transaction
            self._db.execute("BEGIN IMMEDIATE")  # a writer from the start: no upgrade deadlock
            seq0 = self._db.execute("SELECT COALESCE(MAX(seq), -1) FROM trials").fetchone()[0]
            if not isinstance(seq0, int) or seq0 + len(configs) >= 2**63 - 1:
                seq0 = self._count()  # a damaged seq (text, or too large to count on from)
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

    @_sql
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
        ids = [
            tid
            for tid, owner, beat in rows
            if force or _expired(beat, now, lease_s) or _gone(owner)
        ]
        if retry_failed:
            ids += [r[0] for r in self._db.execute("SELECT id FROM trials WHERE status='failed'")]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for tid in ids:
                self._db.execute("UPDATE trials SET status='queued', owner=NULL WHERE id=?", (tid,))
        return len(ids)

    @_sql
    def queued(self) -> list[RunConfig]:
        """Configs of queued trials, in the order they were added (a writer's read: a config
        that does not decode is a StoreError naming its row)."""
        rows = self._db.execute(
            "SELECT id, config, rowid FROM trials WHERE status='queued' ORDER BY seq"
        ).fetchall()
        out = []
        for tid, config, rowid in rows:
            try:
                out.append(_config(config))
            except _BadColumn as bad:
                self._refuse(_BadRow(rowid, tid, bad))
        return out

    @_sql
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

    @_sql
    def retried(self, trial_id: str) -> None:
        """Count one more attempt of a running trial (its worker died and it runs again)."""
        self._db.execute(
            "UPDATE trials SET attempts=attempts+1, heartbeat=? WHERE id=?", (time.time(), trial_id)
        )

    @_sql
    def unfinished(self, ids: set[str] | None = None) -> dict[str, int]:
        """{'queued': n, 'running': m} among ``ids`` (every trial when None)."""
        out = dict.fromkeys(UNFINISHED, 0)
        for tid, status in self._db.execute(
            "SELECT id, status FROM trials WHERE status IN ('queued', 'running')"
        ):
            if ids is None or tid in ids:
                out[status] += 1
        return out

    @_sql
    def record(
        self,
        trial_id: str,
        result: RunResult | None = None,
        error: str | None = None,
        wall_time: float | None = None,
    ) -> str:
        """Store a finished trial's result (done/diverged) or error (failed); return its status.
        One UPDATE: on a full disk nothing of it is written and the trial stays running."""
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
    @_sql
    def counts(self) -> dict[str, int]:
        """Number of trials per status (every status present, zeros included)."""
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"):
            out[str(status)] = n
        return out

    _COLUMNS = (
        "id, status, config, result, error, loss, started, finished, wall_time, attempts, rowid"
    )

    @_sql
    def trials(
        self, status: str | tuple[str, ...] | None = None, *, salvage: bool = False
    ) -> list[Trial]:
        """Stored trials (optionally only some statuses), in insertion order.

        Every row is checked column by column (``_trial``). A row that does not decode (a
        damaged or hand-edited row): a writer refuses it (StoreError naming the file, the row,
        the column and what to do); a reader (``readonly``) leaves it out with one StoreWarning
        saying how many it left out. ``salvage`` reads row by row and skips the rows a damaged
        file cannot give back, counted in ``self.unreadable``, instead of failing on the first.
        """
        sts = None if status is None else ((status,) if isinstance(status, str) else tuple(status))
        self.unreadable = 0
        rows = self._rows_salvaged() if salvage else self._rows()
        good = self._decoded(rows, strict=not (self.readonly or salvage), warn=not salvage)
        return [t for t in good if sts is None or t.status in sts]

    def _rows(self) -> list[tuple]:
        return self._db.execute(f"SELECT {self._COLUMNS} FROM trials ORDER BY seq").fetchall()

    def _decoded(self, rows: list[tuple], strict: bool, warn: bool = False) -> list[Trial]:
        """The rows as Trials: strict refuses the first bad one; else they are left out,
        counted in ``unreadable`` and, with ``warn`` (a reader), said in one warning."""
        good, bad = [], []
        for r in rows:
            try:
                good.append(_trial(r))
            except _BadRow as e:
                if strict:
                    self._refuse(e)
                bad.append(e)
        self.unreadable += len(bad)
        if bad and warn and self.readonly and not {e.rowid for e in bad} <= self._warned:
            self._warned |= {e.rowid for e in bad}
            warnings.warn(self._left_out(bad), StoreWarning, stacklevel=4)
        return good

    def _refuse(self, bad: _BadRow) -> None:
        path = shlex.quote(str(self.path))
        raise StoreError(
            f"store={str(self.path)!r} has a damaged row ({bad}): nothing was run; "
            + SALVAGE.format(path=path)
            + f', and deleting that row (sqlite3 {path} "DELETE FROM trials WHERE '
            f'rowid={bad.rowid}") lets sweep run its trial again'
        )

    def _left_out(self, bad: list[_BadRow]) -> str:
        more = f"; {len(bad) - 1} more" if len(bad) > 1 else ""
        return (
            f"store={str(self.path)!r}: {len(bad)} trial row(s) could not be read and are left "
            f"out ({bad[0]}{more}); `sizeup sweep` on this store names each and how to run it "
            "again"
        )

    def _rows_salvaged(self) -> list[tuple]:
        """The rows a damaged file still gives back, one rowid at a time; the rest counted in
        ``self.unreadable``."""
        self.unreadable = 0
        rowids: list[int] = []
        try:  # the rowids, as far as the table's pages still list them
            for (rowid,) in self._db.execute("SELECT rowid FROM trials ORDER BY rowid"):
                rowids.append(rowid)
            probe: Any = rowids
        except sqlite3.DatabaseError:  # some are lost: try every rowid up to the last one
            try:
                top = self._db.execute("SELECT MAX(rowid) FROM trials").fetchone()[0] or 0
            except sqlite3.DatabaseError:
                top = max(rowids, default=0) + 100_000
            probe = range(1, min(max(top, *rowids, 0), 1_000_000) + 1)
        rows = []
        for rowid in probe:
            try:
                r = self._db.execute(
                    f"SELECT {self._COLUMNS} FROM trials WHERE rowid=?", (rowid,)
                ).fetchone()
            except sqlite3.DatabaseError:
                self.unreadable += 1
                continue
            if r is not None:
                rows.append(r)
        return rows

    def get(self, trial_id: str) -> Trial:
        """One trial by id (StoreError when absent)."""
        for t in self.trials():
            if t.id == trial_id:
                return t
        raise StoreError(f"trial id={trial_id!r} is not in store={str(self.path)!r}")

    @_sql
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
        db = sqlite3.connect(str(self.path), timeout=BUSY_S, isolation_level=None)
        _hold(self.path, 1)
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
            _hold(self.path, -1)
