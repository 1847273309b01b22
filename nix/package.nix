# nixfleet-agent, built from the npm workspace with Node.js 20.
#
# package-lock.json is the only source of dependency versions and hashes; no npmDepsHash to
# keep in step. The lock records no `resolved` URLs (it is written with
# omit-lockfile-registry-resolved), so the registry URL of each tarball is derived from its
# name and version, and `integrity` pins its content. Each tarball is one fetchurl; the
# install then runs offline against a copy of the lock that points at them.
#
# nixpkgs' importNpmLock does not fit this repository: it rewrites workspace links
# (`"link": true`) into store copies of the workspace sources, so the built packages would
# not be what node_modules resolves, and its hooks compile native modules against the
# headers of the default nodejs rather than the one that runs them.
{
  lib,
  stdenv,
  buildNpmPackage,
  fetchurl,
  makeSetupHook,
  makeWrapper,
  nodejs_20,
  runCommand,
  xcbuild,
}:

let
  nodejs = nodejs_20;
  root = ../.;
  packageJson = lib.importJSON (root + "/package.json");
  lock = lib.importJSON (root + "/package-lock.json");

  # "node_modules/a/node_modules/@s/b" -> "@s/b" (an aliased entry carries its real name).
  packageName =
    path: entry: entry.name or (lib.last (lib.splitString "node_modules/" path));

  tarball =
    path: entry:
    let
      name = packageName path entry;
    in
    fetchurl {
      url = entry.resolved or "https://registry.npmjs.org/${name}/-/${baseNameOf name}-${entry.version}.tgz";
      hash = entry.integrity;
    };

  # npm's names for the host, for the os/cpu/libc fields of platform-specific packages
  # (esbuild, rollup, ... ship one optional package per platform).
  host = {
    os = if stdenv.hostPlatform.isDarwin then "darwin" else "linux";
    cpu =
      if stdenv.hostPlatform.isx86_64 then
        "x64"
      else if stdenv.hostPlatform.isAarch64 then
        "arm64"
      else
        stdenv.hostPlatform.parsed.cpu.name;
    libc = if stdenv.hostPlatform.isMusl then "musl" else "glibc";
  };
  allows =
    field: entry:
    let
      listed = entry.${field} or [ ];
      wanted = lib.filter (value: !lib.hasPrefix "!" value) listed;
    in
    !(lib.elem "!${host.${field}}" listed) && (wanted == [ ] || lib.elem host.${field} wanted);
  forHost = entry: allows "os" entry && allows "cpu" entry && allows "libc" entry;

  # Registry entries for this host point at their tarball in the store. Workspace links,
  # the root and the workspaces stay as they are, and so do other platforms' packages: npm
  # skips them without fetching, and they are not downloaded here either.
  offlineLock = lock // {
    packages = lib.mapAttrs (
      path: entry:
      if entry ? integrity && !(entry.link or false) && forHost entry then
        entry // { resolved = "file:${tarball path entry}"; }
      else
        entry
    ) lock.packages;
  };

  npmDeps = runCommand "nixfleet-agent-npm-deps" {
    offlineLock = builtins.toJSON offlineLock;
    passAsFile = [ "offlineLock" ];
  } ''
    mkdir $out
    cp "$offlineLockPath" $out/package-lock.json
  '';

  # Only the packages the repository allows to run install scripts are rebuilt (the root
  # package.json's allowScripts), as on a developer's `npm install`.
  rebuild = lib.attrNames (lib.filterAttrs (_: allowed: allowed) (packageJson.allowScripts or { }));

  # The node flags and environment of the bin script's shebang (nix/node-flags.nix).
  nodeSettings = import ./node-flags.nix { inherit lib; };

  npmConfigHook = makeSetupHook {
    name = "nixfleet-npm-offline-install";
    substitutions = {
      inherit nodejs;
      rebuild = lib.escapeShellArgs rebuild;
    };
  } ./npm-offline-install.sh;

  # The workspace's sources: no build outputs or installed modules from a developer's tree
  # when this file is used outside the flake (the flake's source is already git-tracked
  # files only).
  src = lib.cleanSourceWith {
    src = lib.cleanSource root;
    filter =
      name: type:
      let
        base = baseNameOf name;
      in
      !(type == "directory" && lib.elem base [ "node_modules" "dist" "build" "coverage" ])
      && !(lib.hasSuffix ".tsbuildinfo" base);
  };
in
buildNpmPackage {
  pname = "nixfleet-agent";
  version = (lib.importJSON (root + "/packages/agent/package.json")).version;
  inherit src nodejs npmDeps npmConfigHook;

  # node-gyp (better-sqlite3, unix-dgram) needs python3, which buildNpmPackage adds
  # (nodejs.python), and a C++ compiler (stdenv's). On darwin gyp also calls xcrun.
  nativeBuildInputs = [ makeWrapper ] ++ lib.optionals stdenv.hostPlatform.isDarwin [ xcbuild ];

  # `npm run build` (tsc -b, then the command line's bundle: scripts/bundle.ts) is
  # buildNpmPackage's default build.

  installPhase = ''
    runHook preInstall

    npm prune --omit=dev --no-save
    # The dev tools (the demo `dev` loads by name, the dev control plane) are workspace
    # packages the agent does not depend on, but prune keeps workspace links: they are not
    # part of the package.
    rm -f node_modules/@nixfleet/dev node_modules/@nixfleet/dev-control-plane
    # prune leaves the empty scope directories of what it removed.
    find node_modules -mindepth 1 -maxdepth 2 -type d -empty -delete

    dest=$out/lib/nixfleet-agent
    mkdir -p $dest/packages
    cp package.json $dest/
    # Workspace links are relative (node_modules/@nixfleet/agent -> ../../packages/agent):
    # copied as they are, they resolve inside $dest.
    cp -r node_modules $dest/
    for dir in packages/*; do
      case $dir in packages/dev | packages/dev-control-plane) continue ;; esac
      mkdir -p $dest/$dir
      cp $dir/package.json $dest/$dir/
      for part in dist bin node_modules; do
        if [ -e $dir/$part ]; then cp -r $dir/$part $dest/$dir/; fi
      done
    done

    # node-gyp's intermediates (objects, Makefiles, dependency lists naming the compiler's
    # and libc's headers) would pull the toolchain into the runtime closure: keep only the
    # built modules.
    find $dest/node_modules -name binding.gyp -print0 | while IFS= read -r -d "" gyp; do
      build=$(dirname "$gyp")/build
      if compgen -G "$build/Release/*.node" > /dev/null; then
        keep=$(mktemp -d)
        mv "$build"/Release/*.node "$keep"/
        rm -rf "$build"
        mkdir -p "$build/Release"
        mv "$keep"/*.node "$build/Release/"
        rmdir "$keep"
      fi
    done

    makeWrapper ${lib.getExe nodejs} $out/bin/nixfleet-agent \
      ${
        lib.concatStringsSep " " (
          lib.mapAttrsToList (name: value: "--set-default ${name} ${lib.escapeShellArg value}") nodeSettings.env
        )
      } \
      --add-flags ${lib.escapeShellArg (lib.concatStringsSep " " nodeSettings.flags)} \
      --add-flags $dest/packages/agent/bin/nixfleet-agent.js

    runHook postInstall
  '';

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    $out/bin/nixfleet-agent --version
    $out/bin/nixfleet-agent run --help > /dev/null
    # Without the dev tools, `dev` says so and exits 69.
    status=0
    $out/bin/nixfleet-agent dev 2> dev.err || status=$?
    [ $status = 69 ]
    grep -q "needs the @nixfleet/dev package" dev.err
    [ ! -e $out/lib/nixfleet-agent/packages/dev ]
    # The native modules load with the node that runs them (ABI checked at load).
    (cd $out/lib/nixfleet-agent/packages/agent && ${lib.getExe nodejs} -e '
      require("better-sqlite3")(":memory:").close()
      ${lib.optionalString stdenv.hostPlatform.isLinux ''require("unix-dgram")''}
    ')
    runHook postInstallCheck
  '';

  meta = {
    description = "nixfleet host agent (TypeScript/Effect port of the nixfleet v0.2 agent)";
    license = lib.licenses.mit;
    mainProgram = "nixfleet-agent";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
