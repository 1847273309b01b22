/**
 * The environment of the Nix commands a sandbox runs (its own setup and the agent's
 * pipeline alike): Nix's configuration through `NIX_CONFIG`, and HOME and the XDG
 * directories inside the sandbox, since Nix writes caches there (`~/.cache/nix`) even for a
 * local build.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * Environment variables, added to the process's own.
 *
 * @since 0.1.0
 */
export type Environment = Readonly<Record<string, string>>

/**
 * `NIX_CONFIG` lines for a sandbox with no substituters (nothing from the network) and
 * `nix copy` enabled.
 *
 * @since 0.1.0
 */
export const OFFLINE: ReadonlyArray<string> = ["substituters =", "experimental-features = nix-command"]

/**
 * `NIX_CONFIG` lines that substitute from one binary cache only, and only what is signed by
 * `publicKey`.
 *
 * @since 0.1.0
 */
export const substituteFrom = (cache: { readonly url: string; readonly publicKey: string }): ReadonlyArray<string> => [
  `substituters = ${cache.url}`,
  `trusted-public-keys = ${cache.publicKey}`,
  "require-sigs = true",
  "experimental-features = nix-command"
]

/**
 * @since 0.1.0
 */
export const nixConfig = (lines: ReadonlyArray<string>): Environment => ({ NIX_CONFIG: `${lines.join("\n")}\n` })

/**
 * HOME and the XDG base directories under `home`: whatever Nix caches or creates for "the
 * user" stays in the sandbox.
 *
 * @since 0.1.0
 */
export const homeIn = (home: string): Environment => ({
  HOME: home,
  XDG_CACHE_HOME: `${home}/.cache`,
  XDG_CONFIG_HOME: `${home}/.config`,
  XDG_DATA_HOME: `${home}/.local/share`,
  XDG_STATE_HOME: `${home}/.local/state`
})

/**
 * A `CommandExecutor` that runs every command with `env` on top of the process's
 * environment, over the executor it replaces: the pipeline and the probes run unchanged,
 * and the process's own environment is never modified.
 *
 * @since 0.1.0
 */
export const withEnvironment = (
  env: Environment
): Layer.Layer<CommandExecutor.CommandExecutor, never, CommandExecutor.CommandExecutor> =>
  Layer.effect(
    CommandExecutor.CommandExecutor,
    Effect.map(
      CommandExecutor.CommandExecutor,
      (executor) => CommandExecutor.makeExecutor((command) => executor.start(Command.env(command, env)))
    )
  )
