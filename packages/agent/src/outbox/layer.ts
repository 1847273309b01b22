/**
 * Assembly of the outbox layer: state directory, corruption check, SQLite client with
 * pragmas and migrations, legacy import, service.
 *
 * It takes the `Outbox` tag as an argument and imports only types from `Outbox.ts`, so the
 * public module depends on its implementation and never the other way round.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { AgentConfig } from "../config/AgentConfig.js"
import { DATABASE_FILE } from "../config/stateFiles.js"
import { quarantineIfCorrupt } from "./corrupt.js"
import { guard } from "./errors.js"
import { makePrivate } from "./files.js"
import { importLegacyQueue } from "./legacyImport.js"
import type { OutboxService } from "./Outbox.js"
import * as service from "./service.js"
import { layerDatabase } from "./sqlite.js"

/**
 * The database file under the state directory.
 */
export { DATABASE_FILE }

/**
 * The outbox and its SQL client, for the outbox's own tests (pragmas, integrity). The
 * rest of the agent gets `layer`, which hides the client.
 */
export const layerWithSql = <I>(tag: Context.Tag<I, OutboxService>) =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const config = yield* AgentConfig
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      // 0700: the outbox holds the host's deployment history; only the agent reads it.
      yield* fs.makeDirectory(config.stateDir, { recursive: true, mode: 0o700 }).pipe(
        guard("open", `creating ${config.stateDir}`)
      )
      const filename = path.join(config.stateDir, DATABASE_FILE)
      yield* quarantineIfCorrupt(filename)
      yield* makePrivate(filename).pipe(guard("open", `making ${filename} private (0600)`))
      const outbox = Layer.scoped(
        tag,
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* importLegacyQueue(sql, config.stateDir)
          return yield* service.make({ nonDurableCap: config.outboxNonDurableCap, filename })
        })
      )
      return outbox.pipe(Layer.provideMerge(layerDatabase(filename)))
    })
  )

/**
 * The outbox alone: the SQL client stays inside (another `SqlClient` of the application
 * is neither shadowed nor reachable through it).
 */
export const layer = <I>(tag: Context.Tag<I, OutboxService>) =>
  Layer.map(layerWithSql(tag), (context) => Context.make(tag, Context.get(context, tag)))
