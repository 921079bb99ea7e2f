"""Forward-only schema migrations; the schema version lives in ``PRAGMA user_version``.

Migration ``n`` (1-based) is ``MIGRATIONS[n - 1]``. Each is applied in its own
``BEGIN IMMEDIATE`` transaction together with the version bump, so a crash leaves the file
at a whole version. Never edit a released migration: append a new one. Foreign keys are
already ON when migrations run (the PRAGMA is a no-op inside a transaction), so a future
table rebuild must keep references valid at every statement.

Timestamps are unix epoch seconds (REAL, UTC) and days are UTC day numbers (see clock.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

_ACTIVE = "('queued', 'uploading', 'submitted', 'generating')"

# 1: settings, audit log and the key/value meta table.
_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE guild_settings (
    guild_id       INTEGER PRIMARY KEY,
    server_cap     INTEGER NOT NULL DEFAULT 0 CHECK (server_cap >= 0),
    paused         INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    pause_reason   TEXT,
    log_channel_id INTEGER,
    updated_at     REAL NOT NULL
);

CREATE TABLE member_settings (
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    daily_override INTEGER CHECK (daily_override >= 0),
    bonus          INTEGER NOT NULL DEFAULT 0 CHECK (bonus >= 0),
    blocked        INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
    block_reason   TEXT,
    updated_at     REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

CREATE TABLE role_allowances (
    guild_id   INTEGER NOT NULL,
    role_id    INTEGER NOT NULL,
    daily      INTEGER NOT NULL CHECK (daily >= 0),
    updated_at REAL NOT NULL,
    PRIMARY KEY (guild_id, role_id)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id    INTEGER NOT NULL,
    actor_id    INTEGER NOT NULL,
    action      TEXT NOT NULL,
    target_id   INTEGER,
    before_json TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(before_json)),
    after_json  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(after_json)),
    reason      TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX ix_audit_guild ON audit_log (guild_id, id);
CREATE INDEX ix_audit_target ON audit_log (guild_id, target_id, id);
CREATE INDEX ix_audit_actor ON audit_log (guild_id, actor_id, id);
"""

# 2: jobs and their input files (kept only until PixVerse has them).
_V2 = f"""
CREATE TABLE jobs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id               INTEGER NOT NULL,
    channel_id             INTEGER NOT NULL,
    user_id                INTEGER NOT NULL,
    kind                   TEXT NOT NULL,
    parent_job_id          INTEGER REFERENCES jobs (id),
    params                 TEXT NOT NULL CHECK (json_valid(params)),
    cost                   INTEGER NOT NULL CHECK (cost >= 0),
    state                  TEXT NOT NULL DEFAULT 'queued' CHECK (state IN (
                               'queued', 'uploading', 'submitted', 'generating',
                               'done', 'failed', 'cancelled')),
    pixverse_img_id        INTEGER,
    pixverse_media_id      INTEGER,
    pixverse_video_id      INTEGER,
    trace_id               TEXT,
    result_url             TEXT,
    status_channel_id      INTEGER,
    status_message_id      INTEGER,
    interaction_token      TEXT,
    interaction_expires_at REAL,
    attempts               INTEGER NOT NULL DEFAULT 0,
    next_attempt_at        REAL,
    error                  TEXT,
    removed_at             REAL,
    removed_by             INTEGER,
    created_at             REAL NOT NULL,
    updated_at             REAL NOT NULL,
    started_at             REAL,
    submitted_at           REAL,
    finished_at            REAL
);
CREATE INDEX ix_jobs_member ON jobs (guild_id, user_id, id);
CREATE INDEX ix_jobs_active ON jobs (user_id) WHERE state IN {_ACTIVE};
CREATE INDEX ix_jobs_queued ON jobs (created_at, id) WHERE state = 'queued';
CREATE INDEX ix_jobs_user_started ON jobs (user_id, started_at);
CREATE INDEX ix_jobs_done ON jobs (finished_at) WHERE state = 'done';
CREATE INDEX ix_jobs_parent ON jobs (parent_job_id);
-- one trace id per generation: the runner re-sends with it, never reuses it for another job
CREATE UNIQUE INDEX ux_jobs_trace ON jobs (trace_id) WHERE trace_id IS NOT NULL;

CREATE TABLE job_inputs (
    job_id       INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data         BLOB NOT NULL,
    created_at   REAL NOT NULL
);
"""

# 3: the credit ledger (one row per job) and per-day usage counters.
_V3 = """
CREATE TABLE ledger (
    job_id         INTEGER PRIMARY KEY REFERENCES jobs (id),
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    base_allowance INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released', 'refunded')),
    reserved_at    REAL NOT NULL,
    committed_at   REAL,
    committed_day  INTEGER,
    from_bonus     INTEGER NOT NULL DEFAULT 0,
    released_at    REAL,
    release_reason TEXT,
    refunded_at    REAL
);
CREATE INDEX ix_ledger_reserved ON ledger (guild_id, user_id, amount) WHERE state = 'reserved';
CREATE INDEX ix_ledger_committed ON ledger (guild_id, committed_day, user_id, amount)
    WHERE state = 'committed';

CREATE TABLE member_days (
    guild_id INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    day      INTEGER NOT NULL,
    used     INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (guild_id, user_id, day)
) WITHOUT ROWID;

CREATE TABLE guild_days (
    guild_id INTEGER NOT NULL,
    day      INTEGER NOT NULL,
    spent    INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0),
    PRIMARY KEY (guild_id, day)
) WITHOUT ROWID;
"""

# 4: the largest file the job's destination accepts (the interaction's upload limit), so the
# finished video is downloaded only when it can be attached.
_V4 = """
ALTER TABLE jobs ADD COLUMN upload_limit INTEGER CHECK (upload_limit > 0);
"""

# 5: /mod — the channels where generation commands may be used (none = everywhere) and the
# words or phrases refused in prompts, per server. Phrases are stored normalized (casefolded,
# single spaces) so "Foo  Bar" and "foo bar" are one entry.
_V5 = """
CREATE TABLE allowed_channels (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    added_by   INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
) WITHOUT ROWID;

CREATE TABLE prompt_filters (
    guild_id   INTEGER NOT NULL,
    phrase     TEXT NOT NULL CHECK (length(phrase) BETWEEN 1 AND 100),
    added_by   INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (guild_id, phrase)
) WITHOUT ROWID;
"""

# 6: a finished job whose final status (video or failure) has not yet reached Discord, and
# since when: the runner keeps trying to deliver it, also after a restart, until a route
# succeeds, the channel is gone, or the delivery window closes (NULL = nothing to deliver).
_V6 = """
ALTER TABLE jobs ADD COLUMN delivery_since REAL;
CREATE INDEX ix_jobs_delivery ON jobs (delivery_since) WHERE delivery_since IS NOT NULL;
"""

# 7: scale (a million jobs).
# * /mod cancel and /mod remove offer the server's newest unfinished / kept results (ORDER BY
#   id DESC LIMIT 25), and unfinished(guild_id=) lists the server's unfinished jobs; with only
#   ix_jobs_member (guild_id, user_id, id) SQLite read every job the server ever had and sorted
#   them (seconds). These two walk just the rows those lists show, in id order, and stop at the
#   limit. Their WHERE is written exactly like the queries' (models.ACTIVE_SQL): that is what
#   lets SQLite prove it may use a partial index.
# * /quota-admin top period:week summed a week of the server's ledger rows per member and
#   sorted them (tens of ms on a busy server, growing with its traffic). member_week_spend
#   keeps each member's committed credits and jobs per ISO week (week = the day number of its
#   Monday, clock.week_first_day), updated with the ledger (ledger.commit, refund_committed),
#   and its index is in ranking order, so a week's top members are its first rows. It starts
#   from the committed ledger rows; day 0 was a Thursday, so a day's Monday is
#   day - (day + 3) % 7.
_V7 = f"""
CREATE INDEX ix_jobs_guild_kept ON jobs (guild_id, id) WHERE state = 'done' AND removed_at IS NULL;
CREATE INDEX ix_jobs_guild_active ON jobs (guild_id, id) WHERE state IN {_ACTIVE};

CREATE TABLE member_week_spend (
    guild_id INTEGER NOT NULL,
    week     INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    credits  INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0),
    jobs     INTEGER NOT NULL DEFAULT 0 CHECK (jobs >= 0),
    PRIMARY KEY (guild_id, week, user_id)
) WITHOUT ROWID;
CREATE INDEX ix_member_week_spend_top ON member_week_spend (guild_id, week, credits DESC, user_id)
    WHERE jobs > 0;
INSERT INTO member_week_spend (guild_id, week, user_id, credits, jobs)
    SELECT guild_id, committed_day - (committed_day + 3) % 7, user_id, SUM(amount), COUNT(*)
    FROM ledger WHERE state = 'committed' GROUP BY 1, 2, 3;
"""

# 8: an interaction token is kept only while it works (15 minutes, docs/discord.md); the
# store's sweep (JobStore.forget_expired_tokens, every minute) finds the rows that still hold
# one through this index instead of reading every job.
_V8 = """
CREATE INDEX ix_jobs_token ON jobs (interaction_expires_at) WHERE interaction_token IS NOT NULL;
"""

# 9: the operator's wallet (issue 9, item 3).
# * budget_days: the bot's credits committed per UTC day, all servers together, and when that
#   day's 80 % warning was claimed (once a day, also across restarts). Kept by ledger.commit;
#   a moderator's refund does not lower it (PixVerse charged the account all the same). It
#   starts from guild_days, which already sums each server's day (less earlier refunds).
# * moderation_strikes: one row per job PixVerse's moderation refused (result status 7, or
#   ErrCode 500052/500054/500063 at upload or submit),
#   counted per member, server and UTC day; ``number`` is the member's count with this one,
#   ``blocked`` whether it blocked them.
_V9 = """
CREATE TABLE budget_days (
    day       INTEGER PRIMARY KEY,
    spent     INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0),
    warned_at REAL
);
INSERT INTO budget_days (day, spent) SELECT day, SUM(spent) FROM guild_days GROUP BY day;

CREATE TABLE moderation_strikes (
    job_id     INTEGER PRIMARY KEY REFERENCES jobs (id),
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    day        INTEGER NOT NULL,
    number     INTEGER NOT NULL CHECK (number >= 0),
    blocked    INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
    created_at REAL NOT NULL
);
CREATE INDEX ix_strikes_member_day ON moderation_strikes (guild_id, user_id, day, created_at);
"""

# 10: what PixVerse actually charged (issue 10, item 2).
# * ledger.reserved_amount: when PixVerse reports a job's price (``credits`` in the result) and
#   it differs from the reservation, the commit charges the reported amount: ``amount`` then
#   holds what was committed and this column the reservation it replaced (NULL: the same).
# * price_differences: one row per combination PixVerse charged other than the catalogue said
#   (model, quality, duration, a variant such as fast motion, the reserved and the charged
#   amount), with how many jobs and when: /status shows the recent ones to admins, so the
#   operator corrects the price.
_V10 = """
ALTER TABLE ledger ADD COLUMN reserved_amount INTEGER;

CREATE TABLE price_differences (
    model       TEXT NOT NULL,
    quality     TEXT NOT NULL,
    duration    INTEGER NOT NULL,
    variant     TEXT NOT NULL DEFAULT '',
    reserved    INTEGER NOT NULL,
    charged     INTEGER NOT NULL,
    jobs        INTEGER NOT NULL DEFAULT 0 CHECK (jobs >= 0),
    first_at    REAL NOT NULL,
    last_at     REAL NOT NULL,
    last_job_id INTEGER,
    PRIMARY KEY (model, quality, duration, variant, reserved, charged)
) WITHOUT ROWID;
CREATE INDEX ix_price_differences_last ON price_differences (last_at);
"""

# 11: /transition (issue 10, item 3): a job with two uploaded images.
# * job_extra_inputs: an input file beyond the one in job_inputs, per named slot (a
#   transition's last frame: 'last_frame'), kept like job_inputs only until PixVerse has it
#   and deleted with it; job_inputs is left as released, so older rows need no copy.
# * jobs.pixverse_last_img_id: the last frame's PixVerse image id (the first frame's is
#   pixverse_img_id), kept so a re-roll reuses both uploads.
_V11 = """
CREATE TABLE job_extra_inputs (
    job_id       INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    slot         TEXT NOT NULL CHECK (length(slot) BETWEEN 1 AND 32),
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data         BLOB NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (job_id, slot)
);
ALTER TABLE jobs ADD COLUMN pixverse_last_img_id INTEGER;
"""

# 12: sound (issue 10, item 4). jobs.has_audio keeps what PixVerse said of a finished video
# (``has_audio`` in the result: 1 or 0; NULL when it did not say), so the Sound button is
# offered only on results without sound, also when the result is delivered after a restart.
_V12 = """
ALTER TABLE jobs ADD COLUMN has_audio INTEGER CHECK (has_audio IN (0, 1));
"""

# 13: several processes on one database (issue 11; docs/architecture.md, "Several processes").
# * jobs.owner / jobs.lease_until: the process running a job (claimed it, finished it, or is
#   delivering it) and until when its claim holds; the owner renews it while it lives, and
#   another process takes the job over once it lapsed. NULL on a single process.
# * runners: each process's heartbeat, so the processes alive share the PixVerse request rate.
_V13 = """
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until REAL;
CREATE INDEX ix_jobs_owner ON jobs (owner) WHERE owner IS NOT NULL;

CREATE TABLE runners (
    id           TEXT PRIMARY KEY,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
"""

MIGRATIONS: tuple[str, ...] = (
    _V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13
)  # fmt: skip


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of the bot; refuse rather than corrupt it."""


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def split_statements(script: str) -> list[str]:
    """Split a script into statements (executescript would COMMIT our open transaction)."""
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()[:80]!r}")
    return statements


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[str] = MIGRATIONS,
    *,
    target: int | None = None,
) -> int:
    """Apply the pending migrations up to ``target`` (default: all); return the version.

    Runs synchronously on an autocommit (``isolation_level=None``) connection.
    """
    target = len(migrations) if target is None else target
    current = schema_version(conn)
    if current > len(migrations):
        raise SchemaTooNew(
            f"database schema version {current} is newer than this bot knows "
            f"({len(migrations)}): upgrade the bot or use another DATABASE_PATH"
        )
    for version in range(current + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process (a restart overlapping the old one) may have applied it while
            # we waited for the write lock.
            if schema_version(conn) < version:
                for statement in split_statements(migrations[version - 1]):
                    conn.execute(statement)
                # PRAGMA takes no parameters; version is an int from range().
                conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return schema_version(conn)
