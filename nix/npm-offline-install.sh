# shellcheck shell=bash
# buildNpmPackage's configure step for nix/package.nix: installs node_modules from the lock
# in $npmDeps, whose registry entries for this host are tarballs in the store, then builds
# the native modules the repository allows, against the headers of the node that runs them.

npmOfflineInstall() {
  echo "Executing npmOfflineInstall"

  export HOME="$TMPDIR"
  export npm_config_nodedir="@nodejs@"
  export npm_config_offline=true
  export npm_config_audit=false
  export npm_config_fund=false
  export npm_config_update_notifier=false
  export npm_config_progress=false

  cp --no-preserve=mode "$npmDeps/package-lock.json" package-lock.json

  # No lifecycle scripts here: the root's `prepare` would build before the shebangs are
  # patched; buildPhase builds.
  npm ci --ignore-scripts
  patchShebangs node_modules

  # better-sqlite3 tries a prebuilt binary first: there is no network, and it would be
  # built for another node anyway.
  npm_config_build_from_source=true npm rebuild @rebuild@
  patchShebangs node_modules

  echo "Finished npmOfflineInstall"
}

postConfigureHooks+=(npmOfflineInstall)
