/**
 * The packages as a user installs them: builds the workspace, packs every public package
 * (`npm pack`, as a release would), installs the tarballs with their peer dependencies at
 * the pinned ranges into a clean project outside the repository, then imports every entry
 * of each package's `exports` map with plain `node` and type-checks the same imports with
 * `moduleResolution: nodenext`. CI runs it after the tests (.ci/run); alone:
 *
 *   npx tsx scripts/packInstall.ts
 *
 * - The tarballs: package.json, README.md, LICENSE and type declarations; no tests, test
 *   configuration or build state; no module of a private workspace package (the dev tools);
 *   no compiled file whose source is gone (a stale `dist`). Every bare import of the
 *   compiled JavaScript is a declared dependency, and `effect` and `@effect/*` are peer
 *   dependencies (a dependency would give a program on another Effect minor a second copy).
 * - The `exports` maps: each entry, patterns expanded over the tarball's files, entries set
 *   to null (internal) left out, resolves to a file in the tarball for `node` and for
 *   TypeScript, and only the `@nixfleet/source` condition, first, reaches the sources.
 *   Entries added later are checked without a change here; `EXPECTED` lists a few names some
 *   entries must export.
 * - The install: npm's registry for the peers and the native modules (better-sqlite3
 *   compiles from source, about a minute), npm's cache kept so that reruns are fast; the
 *   `@nixfleet/*` packages come from the tarballs, and one copy of `effect` and of each
 *   `@effect/*` package is installed.
 *
 * Prints one line per check and exits non-zero when any fails, after saying what failed;
 * the clean project is kept then, for a look.
 */
import { spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import { isBuiltin } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import ts from "typescript"

const REPO = Path.resolve(import.meta.dirname, "..")

/** Names some entry points must export, at run time and in their types, by specifier. */
const EXPECTED: Readonly<Record<string, ReadonlyArray<string>>> = {
  "@nixfleet/proto": ["verifyArtifact", "canonicalize", "ArtifactVerifyError"],
  "@nixfleet/state-machine": ["step", "newPending", "rehydrationEffects"],
  "@nixfleet/agent": ["AgentRuntime", "NixfleetAgent", "Outbox", "VERSION"],
  "@nixfleet/agent/NixfleetAgent": ["layer", "layerConfig", "NixfleetAgent", "NixfleetAgentError"],
  "@nixfleet/agent/AgentRuntime": ["layer", "runUntilShutdown", "AgentRuntime"],
  "@nixfleet/dev-control-plane": ["start"]
}

/** The condition that resolves a workspace package to its TypeScript sources (tests, tsx). */
const SOURCE_CONDITION = "@nixfleet/source"
/** The conditions plain `node` matches for `import`, and TypeScript's under nodenext. */
const NODE_CONDITIONS = ["node", "import", "default"]
const TYPES_CONDITIONS = ["types", "node", "import", "default"]

type Target = string | null | ReadonlyArray<Target> | { readonly [condition: string]: Target }

interface Manifest {
  readonly name: string
  readonly version: string
  readonly private?: boolean
  readonly type?: string
  readonly license?: string
  readonly engines?: Readonly<Record<string, string>>
  readonly exports?: Target
  readonly bin?: string | Readonly<Record<string, string>>
  readonly dependencies?: Readonly<Record<string, string>>
  readonly optionalDependencies?: Readonly<Record<string, string>>
  readonly peerDependencies?: Readonly<Record<string, string>>
  readonly devDependencies?: Readonly<Record<string, string>>
  readonly allowScripts?: Readonly<Record<string, boolean>>
}

interface Packed {
  /** The package's directory in the workspace. */
  readonly dir: string
  /** The tarball's contents, unpacked: what the checks read. */
  readonly unpacked: string
  readonly manifest: Manifest
  readonly tarball: string
  /** The tarball's files, relative to the package (`dist/index.js`). */
  readonly files: ReadonlyArray<string>
}

/** One entry of an `exports` map, patterns expanded: what `node` and TypeScript resolve. */
interface Entry {
  readonly specifier: string
  readonly runtime: string
  readonly types: string | undefined
}

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const failed: Array<string> = []

const report = (check: string, problems: ReadonlyArray<string>): boolean => {
  if (problems.length === 0) {
    process.stdout.write(`ok    ${check}\n`)
    return true
  }
  failed.push(check)
  process.stdout.write(`FAIL  ${check}\n${problems.map((problem) => `      ${problem}\n`).join("")}`)
  return false
}

/** The last lines of a command's output, for a failure's report. */
const tail = (run: Run, lines = 40): ReadonlyArray<string> =>
  `${run.stdout}\n${run.stderr}`.trim().split("\n").slice(-lines)

// NODE_OPTIONS is cleared: a `--conditions=@nixfleet/source` inherited from a test runner
// would load the sources instead of what the tarballs hold.
const run = (command: string, args: ReadonlyArray<string>, cwd: string): Run => {
  const done = spawnSync(command, args, {
    cwd,
    encoding: "utf8",
    maxBuffer: 512 * 1024 * 1024,
    env: { ...process.env, NODE_OPTIONS: "" }
  })
  return {
    code: done.status,
    stdout: done.stdout ?? "",
    stderr: `${done.stderr ?? ""}${done.error === undefined ? "" : `\n${done.error.message}`}`
  }
}

const readJson = <A>(path: string): A => JSON.parse(Fs.readFileSync(path, "utf8")) as A

const finish = (work: string | undefined): never => {
  if (failed.length === 0) {
    if (work !== undefined) Fs.rmSync(work, { recursive: true, force: true })
    process.stdout.write("packInstall: every check passed\n")
    process.exit(0)
  }
  process.stdout.write(
    `packInstall: ${failed.length} failed: ${failed.join("; ")}` +
      (work === undefined ? "\n" : `\n(the packed tarballs and the clean project are in ${work})\n`)
  )
  process.exit(1)
}

// --- the exports map -------------------------------------------------------------------

/** `exports` as a map of subpaths ("." for sugar: a bare target or a conditions object). */
const exportsMap = (exports: Target | undefined): ReadonlyArray<readonly [string, Target]> => {
  if (exports === undefined) return []
  if (exports !== null && typeof exports === "object" && !Array.isArray(exports)) {
    const keys = Object.keys(exports)
    if (keys.length > 0 && keys.every((key) => key.startsWith("."))) {
      return Object.entries(exports as Readonly<Record<string, Target>>)
    }
  }
  return [[".", exports]]
}

/** The path a target gives for these conditions, in the object's order (Node's algorithm). */
const resolveTarget = (target: Target, conditions: ReadonlyArray<string>): string | null | undefined => {
  if (target === null || typeof target === "string") return target
  if (Array.isArray(target)) {
    for (const fallback of target as ReadonlyArray<Target>) {
      const resolved = resolveTarget(fallback, conditions)
      if (resolved !== undefined) return resolved
    }
    return undefined
  }
  for (const [condition, value] of Object.entries(target as Readonly<Record<string, Target>>)) {
    if (conditions.includes(condition)) {
      const resolved = resolveTarget(value, conditions)
      if (resolved !== undefined) return resolved
    }
  }
  return undefined
}

/** Every string of a target with the pattern's `*` replaced. */
const substitute = (target: Target, match: string): Target => {
  if (target === null) return null
  if (typeof target === "string") return target.replaceAll("*", match)
  if (Array.isArray(target)) return (target as ReadonlyArray<Target>).map((value) => substitute(value, match))
  return Object.fromEntries(
    Object.entries(target as Readonly<Record<string, Target>>).map(([key, value]) => [key, substitute(value, match)])
  )
}

/** The key of the map that Node picks for a subpath: exact, else the longest pattern prefix. */
const bestKey = (keys: ReadonlyArray<string>, subpath: string): string | undefined => {
  if (keys.includes(subpath)) return subpath
  let best: string | undefined
  for (const key of keys) {
    const star = key.indexOf("*")
    if (star < 0 || subpath.length < key.length) continue
    if (!subpath.startsWith(key.slice(0, star)) || !subpath.endsWith(key.slice(star + 1))) continue
    if (
      best === undefined || star > best.indexOf("*") ||
      (star === best.indexOf("*") && key.length > best.length)
    ) best = key
  }
  return best
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** A `.js` target's declarations, as TypeScript finds them when no `types` condition says. */
const declarationsOf = (path: string): string =>
  path.replace(/\.js$/, ".d.ts").replace(/\.mjs$/, ".d.mts").replace(/\.cjs$/, ".d.cts")

/** The checks of one package's map, and its entries (internal ones left out). */
const checkExports = (packed: Packed): { readonly problems: Array<string>; readonly entries: Array<Entry> } => {
  const problems: Array<string> = []
  const entries: Array<Entry> = []
  const map = exportsMap(packed.manifest.exports)
  if (map.length === 0) problems.push("no exports map")
  const keys = map.map(([key]) => key)
  const inTarball = new Set(packed.files.map((file) => `./${file}`))

  const concrete: Array<readonly [string, Target]> = []
  for (const [key, target] of map) {
    if (!key.includes("*")) {
      concrete.push([key, target])
      continue
    }
    const pattern = resolveTarget(target, NODE_CONDITIONS)
    if (pattern === null || pattern === undefined) continue
    const matcher = new RegExp(`^${pattern.split("*").map(escapeRegExp).join("(.+)")}$`)
    for (const file of inTarball) {
      const match = matcher.exec(file)?.[1]
      if (match === undefined) continue
      const subpath = key.replace("*", match)
      // Another key (a more specific pattern, or an internal one set to null) decides it.
      if (bestKey(keys, subpath) === key) concrete.push([subpath, substitute(target, match)])
    }
  }

  for (const [subpath, target] of concrete) {
    const specifier = subpath === "." ? packed.manifest.name : `${packed.manifest.name}/${subpath.slice(2)}`
    const runtime = resolveTarget(target, NODE_CONDITIONS)
    if (runtime === null) continue
    const where = `"${subpath}"`
    if (runtime === undefined) {
      problems.push(`${where}: no target for node's import conditions (${NODE_CONDITIONS.join(", ")})`)
      continue
    }
    const resolvedTypes = resolveTarget(target, TYPES_CONDITIONS)
    const types = resolvedTypes === null || resolvedTypes === undefined
      ? undefined
      : resolvedTypes.endsWith(".json") || /\.d\.[cm]?ts$/.test(resolvedTypes)
      ? resolvedTypes
      : declarationsOf(resolvedTypes)
    if (target !== null && typeof target === "object" && !Array.isArray(target)) {
      const conditions = Object.keys(target)
      const source = conditions.indexOf(SOURCE_CONDITION)
      if (source > 0) problems.push(`${where}: "${SOURCE_CONDITION}" is condition ${source + 1}, not the first`)
      const typesAt = conditions.indexOf("types")
      const firstRuntime = conditions.findIndex((condition) => NODE_CONDITIONS.includes(condition))
      if (typesAt > firstRuntime) problems.push(`${where}: "types" comes after "${conditions[firstRuntime]}"`)
    }
    for (const [what, path] of [["node", runtime], ["types", types]] as const) {
      if (path === undefined) continue
      if (path.startsWith("./src/") || (/\.[cm]?tsx?$/.test(path) && !/\.d\.[cm]?ts$/.test(path))) {
        problems.push(`${where}: ${what} resolves to a source file (${path}), not a build output`)
      } else if (!inTarball.has(path)) {
        problems.push(`${where}: ${what} resolves to ${path}, which is not in the tarball`)
      }
    }
    if (runtime.endsWith(".cjs")) problems.push(`${where}: ${runtime} is CommonJS; the packages are ES modules only`)
    if (types === undefined && !runtime.endsWith(".json")) problems.push(`${where}: no type declarations`)
    entries.push({ specifier, runtime, types })
  }
  return { problems, entries }
}

// --- the tarballs' contents and manifests ------------------------------------------------

/** Modules of the private workspace packages (the dev tools), by name: none may be packed. */
const privateModules = (privates: ReadonlyArray<string>): ReadonlySet<string> =>
  new Set(privates.flatMap((dir) => {
    const src = Path.join(dir, "src")
    return Fs.existsSync(src)
      ? Fs.readdirSync(src).filter((file) => file.endsWith(".ts")).map((file) => file.replace(/\.ts$/, ""))
        .filter((name) => name !== "index")
      : []
  }))

const TEST_FILE =
  /(^|\/)(test|tests|__tests__)\/|\.(test|spec)\.[cm]?[jt]sx?(\.map)?$|(^|\/)vitest\.|(^|\/)tsconfig[^/]*\.json$|\.tsbuildinfo$|^build\//

const moduleName = (file: string): string => Path.basename(file).replace(/(\.d)?\.[cm]?[jt]s(\.map)?$/, "")

/**
 * What a tarball holds. `bundleSources`: the workspace packages whose sources a bundle in
 * `dist/bundle` may hold (the package's own and its dependencies'), by directory.
 */
const checkContents = (
  packed: Packed,
  devModules: ReadonlySet<string>,
  bundleSources: ReadonlyArray<string>
): Array<string> => {
  const problems: Array<string> = []
  const files = new Set(packed.files)
  for (const required of ["package.json", "README.md", "LICENSE"]) {
    if (!files.has(required)) problems.push(`${required} is missing`)
  }
  if (!packed.files.some((file) => file.startsWith("dist/") && file.endsWith(".d.ts"))) {
    problems.push("no type declarations (dist/**/*.d.ts)")
  }
  for (const file of packed.files) {
    if (TEST_FILE.test(file)) {
      problems.push(`${file}: a test, test configuration or build state`)
      continue
    }
    if (file.startsWith("dist/bundle/")) {
      // A bundle is checked by the sources its source map names.
      if (!file.endsWith(".map")) continue
      const map = readJson<{ readonly sources?: ReadonlyArray<string> }>(Path.join(packed.unpacked, file))
      const foreign = new Set(
        (map.sources ?? []).map((source) => Path.resolve(Path.dirname(Path.join(packed.dir, file)), source))
          .filter((source) => source.startsWith(Path.join(REPO, "packages") + Path.sep))
          .filter((source) => !bundleSources.some((dir) => source.startsWith(dir + Path.sep)))
          .map((source) => Path.relative(REPO, source).split(Path.sep).slice(0, 2).join("/"))
      )
      for (const dir of foreign) problems.push(`${file}: bundles ${dir}, which is not a dependency (a dev tool)`)
      continue
    }
    if (/(^|\/)(dev|dev-control-plane)\//.test(file) || devModules.has(moduleName(file))) {
      problems.push(`${file}: a module of the dev tools`)
    }
    // Each compiled file has its source: a stale `dist` ships modules that no longer exist.
    const stem = /^dist\/(.+?)(?:\.d\.ts|\.js)(?:\.map)?$/.exec(file)?.[1]
    if (
      stem !== undefined &&
      ![".ts", ".tsx", ".mts"].some((ext) => Fs.existsSync(Path.join(packed.dir, "src", stem + ext)))
    ) {
      problems.push(`${file}: no src/${stem}.ts (a stale build output)`)
    }
  }
  return problems
}

const packageOf = (specifier: string): string => {
  const parts = specifier.split("/")
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0] ?? specifier
}

const isEffect = (name: string): boolean => name === "effect" || name.startsWith("@effect/")

/** The bare specifiers a compiled module imports (static, dynamic, require). */
const importsOf = (text: string): ReadonlyArray<string> => [
  ...ts.preProcessFile(text, true, true).importedFiles.map((file) => file.fileName),
  // `createRequire(import.meta.url)("unix-dgram")`, which preProcessFile does not see.
  ...Array.from(text.matchAll(/createRequire\([^)]*\)\(\s*["']([^"']+)["']\s*\)/g), (match) => match[1] ?? "")
]

const checkManifest = (packed: Packed): Array<string> => {
  const problems: Array<string> = []
  const { manifest } = packed
  if (manifest.type !== "module") problems.push(`"type" is ${JSON.stringify(manifest.type)}, not "module"`)
  if (manifest.engines?.["node"] === undefined) problems.push("no engines.node")
  if (manifest.license === undefined) problems.push("no license")
  const dependencies = { ...manifest.dependencies, ...manifest.optionalDependencies }
  const peers = manifest.peerDependencies ?? {}
  for (const name of Object.keys(dependencies).filter(isEffect)) {
    problems.push(`${name} is a dependency; Effect packages are peer dependencies`)
  }
  for (const [name, range] of Object.entries(peers)) {
    // The workspace installs and tests against what users are told to install.
    if (manifest.devDependencies?.[name] !== range) {
      problems.push(`peer ${name}@${range} is not also a devDependency with the same range`)
    }
  }
  const undeclared = new Map<string, string>()
  for (const file of packed.files) {
    if (!/\.m?js$/.test(file) || file.startsWith("dist/bundle/") || !file.startsWith("dist/")) continue
    for (const specifier of importsOf(Fs.readFileSync(Path.join(packed.unpacked, file), "utf8"))) {
      if (specifier === "" || specifier.startsWith(".") || specifier.startsWith("/") || isBuiltin(specifier)) continue
      const name = packageOf(specifier)
      if (name === manifest.name) continue
      if (isEffect(name) && !(name in peers)) undeclared.set(name, `${file} imports ${name}, not a peer dependency`)
      else if (!(name in dependencies) && !(name in peers)) undeclared.set(name, `${file} imports ${name}, undeclared`)
    }
  }
  problems.push(...undeclared.values())
  return problems
}

// --- the run ----------------------------------------------------------------------------

const main = (): never => {
  process.stdout.write("== npm run build\n")
  const build = run("npm", ["run", "build"], REPO)
  if (!report("npm run build", build.code === 0 ? [] : tail(build))) finish(undefined)

  const workspaces = Fs.readdirSync(Path.join(REPO, "packages"))
    .map((name) => Path.join(REPO, "packages", name))
    .filter((dir) => Fs.existsSync(Path.join(dir, "package.json")))
    .sort()
  const publics = workspaces.filter((dir) => readJson<Manifest>(Path.join(dir, "package.json")).private !== true)
  const devModules = privateModules(workspaces.filter((dir) => !publics.includes(dir)))

  const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nixfleet-pack-"))
  const tarballs = Path.join(work, "tarballs")
  Fs.mkdirSync(tarballs)
  const packs: Array<Packed> = []
  for (const dir of publics) {
    const manifest = readJson<Manifest>(Path.join(dir, "package.json"))
    const pack = run("npm", ["pack", "--json", "--pack-destination", tarballs], dir)
    let listing: ReadonlyArray<{ readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }>
    try {
      listing = JSON.parse(pack.stdout.slice(pack.stdout.indexOf("[")))
    } catch {
      listing = []
    }
    const first = listing[0]
    if (pack.code !== 0 || first === undefined) {
      report(`npm pack ${manifest.name}`, tail(pack))
      continue
    }
    const tarball = Path.join(tarballs, first.filename)
    const unpacked = Path.join(work, "unpacked", first.filename.replace(/\.tgz$/, ""))
    Fs.mkdirSync(unpacked, { recursive: true })
    const untar = run("tar", ["-xzf", tarball, "-C", unpacked, "--strip-components=1"], work)
    if (!report(`npm pack ${manifest.name} (${first.files.length} files)`, untar.code === 0 ? [] : tail(untar))) {
      continue
    }
    // The manifest as packed (npm normalises some fields).
    packs.push({
      dir,
      unpacked,
      manifest: readJson<Manifest>(Path.join(unpacked, "package.json")),
      tarball,
      files: first.files.map((file) => file.path)
    })
  }
  if (packs.length !== publics.length) finish(work)

  const entries: Array<Entry> = []
  for (const packed of packs) {
    const { manifest } = packed
    const { name } = manifest
    const bundleSources = [
      packed.dir,
      ...workspaces.filter((dir) => {
        const workspace = readJson<Manifest>(Path.join(dir, "package.json")).name
        return workspace in { ...manifest.dependencies, ...manifest.optionalDependencies, ...manifest.peerDependencies }
      })
    ]
    report(
      `${name}: tarball holds README.md, LICENSE, declarations; no tests, dev tools or stale output`,
      checkContents(packed, devModules, bundleSources)
    )
    report(`${name}: ES module manifest; Effect as peers; every import declared`, checkManifest(packed))
    const exported = checkExports(packed)
    report(`${name}: exports map (${exported.entries.length} entries)`, exported.problems)
    entries.push(...exported.entries)
  }
  for (const specifier of Object.keys(EXPECTED)) {
    if (!entries.some((entry) => entry.specifier === specifier)) {
      report(`${specifier} is an entry point`, ["not an entry of any packed package's exports map"])
    }
  }

  // The clean project: the tarballs, each peer at the range the packages pin, and what the
  // type check needs at the workspace's ranges.
  const root = readJson<Manifest>(Path.join(REPO, "package.json"))
  const peers = new Map<string, string>()
  const disagreements: Array<string> = []
  for (const { manifest } of packs) {
    for (const [name, range] of Object.entries(manifest.peerDependencies ?? {})) {
      const other = peers.get(name)
      if (other !== undefined && other !== range) {
        disagreements.push(`${name}: ${other} and ${range} (${manifest.name})`)
      }
      peers.set(name, range)
    }
  }
  report("the packages pin the same range for each peer dependency", disagreements)
  const tooling = ["typescript", "@types/node"].map((name) => `${name}@${root.devDependencies?.[name] ?? "latest"}`)
  const project = Path.join(work, "project")
  Fs.mkdirSync(project)
  Fs.writeFileSync(
    Path.join(project, "package.json"),
    JSON.stringify({
      name: "nixfleet-pack-check",
      private: true,
      type: "module",
      allowScripts: root.allowScripts ?? {}
    })
  )
  const specs = [
    ...packs.map((packed) => packed.tarball),
    ...Array.from(peers, ([name, range]) => `${name}@${range}`),
    ...tooling
  ]
  process.stdout.write(`== npm install in ${project} (better-sqlite3 compiles from source: about a minute)\n`)
  const install = run("npm", ["install", "--no-audit", "--no-fund", ...specs], project)
  if (
    !report(`npm install of ${packs.length} tarballs and ${peers.size} peers`, install.code === 0 ? [] : tail(install))
  ) {
    finish(work)
  }

  const lock = readJson<{ readonly packages: Readonly<Record<string, { readonly resolved?: string }>> }>(
    Path.join(project, "package-lock.json")
  )
  const copies = new Map<string, Array<string>>()
  for (const path of Object.keys(lock.packages)) {
    const at = path.lastIndexOf("node_modules/")
    if (at < 0) continue
    const name = path.slice(at + "node_modules/".length)
    copies.set(name, [...(copies.get(name) ?? []), path])
  }
  report(
    "@nixfleet/* installed from the tarballs, once each",
    packs.flatMap(({ manifest, tarball }) => {
      const paths = copies.get(manifest.name) ?? []
      const resolved = lock.packages[`node_modules/${manifest.name}`]?.resolved ?? ""
      return [
        ...(paths.length === 1 ? [] : [`${manifest.name}: ${paths.length} copies (${paths.join(", ")})`]),
        ...(resolved.startsWith("file:") && resolved.endsWith(Path.basename(tarball))
          ? []
          : [`${manifest.name} resolved from ${resolved || "nowhere"}, not its tarball`])
      ]
    })
  )
  report(
    "one copy of effect and of each @effect/* package",
    Array.from(copies).filter(([name, paths]) => isEffect(name) && paths.length > 1).map(([name, paths]) =>
      `${name}: ${paths.join(", ")}`
    )
  )

  // (a) plain node: every entry loads, and the expected names are there.
  const script = [
    `const entries = ${JSON.stringify(entries.map((entry) => ({ ...entry, names: EXPECTED[entry.specifier] ?? [] })))}`,
    "const results = []",
    "for (const entry of entries) {",
    "  try {",
    "    const module = entry.runtime.endsWith('.json')",
    "      ? await import(entry.specifier, { with: { type: 'json' } })",
    "      : await import(entry.specifier)",
    "    results.push({ specifier: entry.specifier, exported: Object.keys(module).length,",
    "      missing: entry.names.filter((name) => module[name] === undefined) })",
    "  } catch (error) {",
    "    results.push({ specifier: entry.specifier, error: String(error && error.stack || error) })",
    "  }",
    "}",
    "process.stdout.write(JSON.stringify(results))"
  ].join("\n")
  Fs.writeFileSync(Path.join(project, "imports.mjs"), `${script}\n`)
  const imported = run(process.execPath, ["imports.mjs"], project)
  let results: ReadonlyArray<
    {
      readonly specifier: string
      readonly exported?: number
      readonly missing?: ReadonlyArray<string>
      readonly error?: string
    }
  > = []
  try {
    results = JSON.parse(imported.stdout)
  } catch {
    report("node imports.mjs", tail(imported))
  }
  for (const result of results) {
    const names = EXPECTED[result.specifier] ?? []
    report(
      `node: import "${result.specifier}"` + (names.length > 0 ? ` has ${names.join(", ")}` : ""),
      result.error !== undefined
        ? result.error.split("\n").slice(0, 8)
        : [
          ...(result.exported === 0 ? ["exports nothing"] : []),
          ...(result.missing ?? []).map((name) => `${name} is not exported`)
        ]
    )
  }

  // Internals are sealed: a path the exports map does not list cannot be imported.
  const SEALED = [
    "@nixfleet/agent/dist/support/subprocess.js",
    "@nixfleet/agent/support/subprocess",
    "@nixfleet/agent/src/index.ts"
  ]
  const sealed = run(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const out = []; for (const s of ${
        JSON.stringify(SEALED)
      }) { try { await import(s); out.push(s + " imported") } ` +
      `catch (e) { if (e.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") out.push(s + ": " + e.code) } } ` +
      "process.stdout.write(JSON.stringify(out))"
    ],
    project
  )
  let leaks: ReadonlyArray<string> = []
  try {
    leaks = JSON.parse(sealed.stdout)
  } catch {
    leaks = tail(sealed)
  }
  report("node: internals are not importable (ERR_PACKAGE_PATH_NOT_EXPORTED)", leaks)

  // (b) TypeScript as a consumer compiles: nodenext, strict, the declarations checked too.
  const typed = entries.filter((entry) => entry.types !== undefined && !entry.runtime.endsWith(".json"))
  const source = [
    ...typed.map((entry, index) => `import * as entry${index} from "${entry.specifier}"`),
    "",
    "export const entries = [",
    ...typed.map((entry, index) =>
      `  [entry${index}${(EXPECTED[entry.specifier] ?? []).map((name) => `, entry${index}.${name}`).join("")}],`
    ),
    "]"
  ].join("\n")
  Fs.writeFileSync(Path.join(project, "imports.ts"), `${source}\n`)
  Fs.writeFileSync(
    Path.join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: "nodenext",
        moduleResolution: "nodenext",
        target: "es2022",
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ["node"]
      },
      files: ["imports.ts"]
    })
  )
  const tsc = run(
    process.execPath,
    [Path.join(project, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"],
    project
  )
  report(
    `tsc --noEmit (nodenext, strict, declarations checked) over ${typed.length} entries`,
    tsc.code === 0 ? [] : tail(tsc)
  )

  // The installed command lines run.
  for (const { manifest } of packs) {
    const bins = typeof manifest.bin === "string"
      ? { [manifest.name.split("/").pop() ?? ""]: manifest.bin }
      : manifest.bin
    for (const bin of Object.keys(bins ?? {})) {
      const version = run(Path.join(project, "node_modules/.bin", bin), ["--version"], project)
      report(
        `${bin} --version (from ${manifest.name})`,
        version.code === 0 && version.stdout.includes(manifest.version) ? [] : tail(version)
      )
    }
  }
  return finish(work)
}

main()
