"""The service's history in SQLite: one row per processed pair and one per alert.

The database runs in WAL mode with synchronous=FULL and every row is committed on its own, so a
row that was stored (and could be read back through the API) survives the service being killed
(`kill -9`) or the machine losing power; restarting on the same file keeps the history.
One connection is shared by the sources' threads and the API, behind a lock: SQLite serialises
writers anyway, and a few rows per second need no more.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fume.contract import GASES
from fume.errors import ConfigError, FumeError

SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    class_name TEXT,
    probabilities TEXT,
    smoothed_class_name TEXT,
    smoothed_probabilities TEXT,
    co2_plume_area_px INTEGER, co2_plume_area_percent REAL, co2_tube_found INTEGER,
    ch4_plume_area_px INTEGER, ch4_plume_area_percent REAL, ch4_tube_found INTEGER,
    lag_s REAL
);
CREATE INDEX IF NOT EXISTS pairs_source_time ON pairs (source, time);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    class_name TEXT NOT NULL,
    raised_at REAL NOT NULL,
    cleared_at REAL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_source_time ON alerts (source, raised_at);
"""
PAIR_FIELDS = (
    "time", "source", "class_name", "probabilities", "smoothed_class_name", "smoothed_probabilities",
    *(f"{gas}_{key}" for gas in GASES for key in ("plume_area_px", "plume_area_percent", "tube_found")), "lag_s",
)
JSON_FIELDS = ("probabilities", "smoothed_probabilities")
MAX_ROWS = 100_000  # one answer of /api/history at most (about an hour of one source at 30 pairs/s)


def parse_time(value: str | float | None, what: str = "since") -> float | None:
    """Unix seconds from a number or an ISO 8601 date-time (UTC when it names no zone)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{what}={value!r} is neither unix seconds nor an ISO 8601 date-time (e.g. 2026-05-01T06:00:00)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


class History:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)  # autocommit: each row its own transaction
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise FumeError(f"cannot open the history database {self.path}: {err}") from None

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def add_pair(self, record: dict[str, Any]) -> int:
        """Store one processed pair (keys of PAIR_FIELDS; probabilities as {class: p}); its row id."""
        values = [json.dumps(record.get(k)) if k in JSON_FIELDS else record.get(k) for k in PAIR_FIELDS]
        with self.lock:
            cursor = self.db.execute(f"INSERT INTO pairs ({', '.join(PAIR_FIELDS)}) VALUES ({', '.join('?' * len(PAIR_FIELDS))})", values)
        return int(cursor.lastrowid)

    def raise_alert(self, source: str, class_name: str, at: float, message: str) -> int:
        with self.lock:
            cursor = self.db.execute("INSERT INTO alerts (source, class_name, raised_at, message) VALUES (?, ?, ?, ?)", (source, class_name, at, message))
        return int(cursor.lastrowid)

    def clear_alert(self, alert_id: int, at: float) -> None:
        with self.lock:
            self.db.execute("UPDATE alerts SET cleared_at = ? WHERE id = ?", (at, alert_id))

    def open_alerts(self) -> dict[str, int]:
        """{source: id} of the alerts not cleared (a restarted service carries them on)."""
        with self.lock:
            rows = self.db.execute("SELECT source, MAX(id) AS id FROM alerts WHERE cleared_at IS NULL GROUP BY source").fetchall()
        return {row["source"]: int(row["id"]) for row in rows}

    def _select(
        self, table: str, time_column: str, source: str | None, since: float | None, limit: int, points: int | None = None
    ) -> list[dict[str, Any]]:
        where, args = [], []
        if source is not None:
            where.append("source = ?")
            args.append(source)
        if since is not None:
            where.append(f"{time_column} >= ?")
            args.append(since)
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        with self.lock:
            if points is not None:  # every k-th row, so that about `points` rows span the whole period (a timeline)
                count = self.db.execute(f"SELECT COUNT(*) FROM {table}{condition}", args).fetchone()[0]
                step = max(1, -(-count // max(1, int(points))))
                if step > 1:
                    condition += f"{' AND' if where else ' WHERE'} id % ? = 0"
                    args.append(step)
            # The newest `limit` rows, returned oldest first.
            sql = f"SELECT * FROM (SELECT * FROM {table}{condition} ORDER BY id DESC LIMIT ?) ORDER BY id"
            rows = self.db.execute(sql, [*args, max(1, min(int(limit), MAX_ROWS))]).fetchall()
        return [dict(row) for row in rows]

    def pairs(self, source: str | None = None, since: float | None = None, limit: int = MAX_ROWS, points: int | None = None) -> list[dict[str, Any]]:
        """Stored pairs, oldest first: the newest `limit`, or with `points` about that many spread over the period."""
        rows = self._select("pairs", "time", source, since, limit, points)
        for row in rows:
            for key in JSON_FIELDS:
                row[key] = json.loads(row[key]) if row[key] is not None else None
            for gas in GASES:
                found = row[f"{gas}_tube_found"]
                row[f"{gas}_tube_found"] = None if found is None else bool(found)
        return rows

    def alerts(self, source: str | None = None, since: float | None = None, limit: int = MAX_ROWS) -> list[dict[str, Any]]:
        return self._select("alerts", "raised_at", source, since, limit)

    def count(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0])


def pairs_csv(rows: list[dict[str, Any]], class_names: list[str]) -> str:
    """The history rows as CSV: UTC time, then one column per class for each probability set."""
    from fume.contract import key_name

    columns = ["time_utc", "time", "source", "class_name", *(f"prob_{key_name(n)}" for n in class_names), "smoothed_class_name",
               *(f"smoothed_prob_{key_name(n)}" for n in class_names), *PAIR_FIELDS[6:]]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row, time_utc=iso(row["time"]))
        for prefix, key in (("prob_", "probabilities"), ("smoothed_prob_", "smoothed_probabilities")):
            for name in class_names:
                flat[f"{prefix}{key_name(name)}"] = (row[key] or {}).get(name)
        writer.writerow(flat)
    return out.getvalue()
