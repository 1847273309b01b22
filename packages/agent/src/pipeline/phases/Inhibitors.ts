/**
 * Deferred reboot: some components cannot be switched live (swapping D-Bus, PID 1 or the
 * kernel under running services breaks them). When one differs between the running system
 * and the new closure, the new generation is only made the boot default.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Effect from "effect/Effect"

/**
 * The components compared, first match wins. `init` is deliberately absent: it is
 * regenerated for every system and would defer every update.
 */
export const INHIBITORS: ReadonlyArray<{ readonly component: string; readonly path: string }> = [
  { component: "dbus", path: "etc/systemd/system/dbus.service" },
  { component: "systemd", path: "sw/lib/systemd/systemd" },
  { component: "kernel", path: "kernel" }
]

/**
 * The first component whose fully resolved path differs between `currentSystem` and
 * `newSystem`, or null. A component missing or unresolvable on either side is skipped:
 * only genuine swaps defer, not absences.
 */
export const detectInhibitor = Effect.fn("ActivationPipeline.detectInhibitor")(
  function*(currentSystem: string, newSystem: string) {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    for (const { component, path: relative } of INHIBITORS) {
      const [current, next] = yield* Effect.all([
        Effect.option(fs.realPath(path.join(currentSystem, relative))),
        Effect.option(fs.realPath(path.join(newSystem, relative)))
      ])
      if (current._tag === "Some" && next._tag === "Some" && current.value !== next.value) return component
    }
    return null
  }
)
