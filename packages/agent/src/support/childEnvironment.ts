/**
 * The environment each kind of child process gets: an allow-list, never the agent's whole
 * environment. The agent's environment carries secrets meant for it alone
 * (`OTEL_EXPORTER_OTLP_HEADERS`, a bootstrap token passed as a variable, whatever an
 * operator put in `services.nixfleet-agent.environment`); a probe script or a switch has no
 * business reading them, and a probe's output reaches the control plane in its reason.
 *
 * Every variable passed on is listed here, with why. A variable the agent does not have is
 * not set (nothing is made up), except `PATH`: the agent's own (the unit's `path`), so each
 * child finds the same tools the agent does.
 *
 * @internal
 */

/**
 * The kinds of child: `nix` (nix-store, nix-env: realise, profile, validity), `switch`
 * (`switch-to-configuration` run by the agent itself: the `direct` switch, darwin's
 * activate), `probe` (exec health checks), `tool` (systemctl, systemd-run's client, flock).
 *
 * @internal
 */
export type ChildKind = "nix" | "switch" | "probe" | "tool"

/** Every child: finding programs, and text, time and locale as the host has them. */
const COMMON = [
  // The agent's own PATH (the NixOS module's `path`: Nix, systemd, coreutils...).
  "PATH",
  // Time zone and its database: timestamps in logs the child writes.
  "TZ",
  "TZDIR",
  // Locale: NixOS's glibc finds its locales through LOCALE_ARCHIVE (Perl warns without it).
  "LANG",
  "LC_ALL",
  "LC_CTYPE",
  "LC_MESSAGES",
  "LOCALE_ARCHIVE"
] as const

/** Nix: its configuration, caches, TLS trust and proxies (substitution downloads). */
const NIX = [
  // Nix's user configuration and cache (`~/.config/nix`, `~/.cache/nix`) and temporary files.
  "HOME",
  "TMPDIR",
  "XDG_CACHE_HOME",
  "XDG_CONFIG_HOME",
  "XDG_CONFIG_DIRS",
  "XDG_DATA_HOME",
  "XDG_STATE_HOME",
  // TLS trust for substituters, when not NIX_SSL_CERT_FILE.
  "SSL_CERT_FILE",
  "CURL_CA_BUNDLE",
  // Proxies, as curl (inside Nix) reads them.
  "http_proxy",
  "https_proxy",
  "ftp_proxy",
  "all_proxy",
  "no_proxy",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "FTP_PROXY",
  "ALL_PROXY",
  "NO_PROXY"
] as const

/**
 * NixOS's `switch-to-configuration`: whether to (re)install the boot loader, whether to
 * sync, and the D-Bus address it talks to systemd through when not the default.
 */
const SWITCH = [
  "NIXOS_INSTALL_BOOTLOADER",
  "NIXOS_NO_SYNC",
  "NIXOS_NO_CHECK",
  "DBUS_SYSTEM_BUS_ADDRESS",
  "HOME",
  "TMPDIR"
] as const

/** Probes: a home and a temporary directory, as any command expects. */
const PROBE = ["HOME", "TMPDIR"] as const

/** systemctl, systemd-run, flock: the bus address when not the default. */
const TOOL = ["DBUS_SYSTEM_BUS_ADDRESS"] as const

/** Every name that starts with one of these passes to Nix (NIX_REMOTE, NIX_CONFIG, NIX_SSL_CERT_FILE, NIX_PATH...). */
const NIX_PREFIXES = ["NIX_"] as const

const NAMES: Readonly<Record<ChildKind, ReadonlyArray<string>>> = {
  nix: [...COMMON, ...NIX],
  switch: [...COMMON, ...SWITCH],
  probe: [...COMMON, ...PROBE],
  tool: [...COMMON, ...TOOL]
}

/**
 * The names a child of `kind` may receive: exact names, and prefixes (ending in `_`).
 *
 * @internal
 */
export const allowed = (
  kind: ChildKind
): { readonly names: ReadonlyArray<string>; readonly prefixes: ReadonlyArray<string> } => ({
  names: NAMES[kind],
  prefixes: kind === "nix" ? NIX_PREFIXES : []
})

/**
 * The environment for a child of `kind`: the allowed variables of `parent` (the agent's
 * environment) that are set, then `extra` (the caller's own, e.g. a test's), which wins.
 *
 * @internal
 */
export const childEnvironment = (
  kind: ChildKind,
  parent: Readonly<Record<string, string | undefined>>,
  extra: Readonly<Record<string, string>> = {}
): Record<string, string> => {
  const { names, prefixes } = allowed(kind)
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(parent)) {
    if (value === undefined) continue
    if (names.includes(name) || prefixes.some((prefix) => name.startsWith(prefix))) env[name] = value
  }
  return { ...env, ...extra }
}
