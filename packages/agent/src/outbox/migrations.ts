/**
 * The outbox's SQLite schema, applied by `@effect/sql`'s migrator (one transaction per
 * start, recorded in `effect_sql_migrations`).
 *
 * `outbox` holds the pending rows. `id` is `INTEGER PRIMARY KEY AUTOINCREMENT`: it gives the
 * insertion order the sender delivers in, and AUTOINCREMENT means an id is never reused,
 * so a late `acknowledge(id)` can never delete a newer row that happened to get the same id.
 * `UNIQUE (rollout_id, seq)` makes enqueue and the legacy import idempotent; its index also
 * serves `pendingCount(rolloutId)` (a prefix lookup), so there is no second index for it.
 * The partial index on non-durable ids serves the cap (find the oldest probe chatter
 * without scanning durable rows). `created_at` and `dead_at` are Unix milliseconds.
 *
 * `outbox_dead_letter` keeps what the control plane refused for good, with its own id (the
 * tie-break of "newest first") and one row per `(rollout_id, seq)`.
 *
 * Tables are STRICT so a wrong type is refused by SQLite instead of being stored.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"

const createTables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id  TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    hostname    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    durable     INTEGER NOT NULL CHECK (durable IN (0, 1)),
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    UNIQUE (rollout_id, seq)
  ) STRICT`
  yield* sql`CREATE INDEX outbox_non_durable ON outbox (id) WHERE durable = 0`
  yield* sql`CREATE TABLE outbox_dead_letter (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id  TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    hostname    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    dead_at     INTEGER NOT NULL,
    status      INTEGER,
    reason      TEXT    NOT NULL,
    UNIQUE (rollout_id, seq)
  ) STRICT`
  yield* sql`CREATE INDEX outbox_dead_letter_recent ON outbox_dead_letter (dead_at, id)`
})

/**
 * The migrations, keyed `<id>_<name>` as `Migrator.fromRecord` expects. Append only: a
 * released migration is never edited.
 */
export const migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {
  "0001_create_outbox": createTables
}
