/**
 * `nixosModules.default` and `darwinModules.default` evaluated by nixpkgs' real module system
 * (`nix/module-eval.nix`, the vendored `lib`), for the option sets an operator writes: what
 * the host gets (the unit's ExecStart and settings, tmpfiles, /etc files, the launchd daemon)
 * is checked, its command line goes through the agent's real parser, and every bad
 * configuration fails with the module system's own message. On a host built as the
 * reference framework's `mkHost` builds one (`fixtures/upstream-host.nix`: its options as it
 * declares them, its values as it sets them), the module takes the reference agent module's
 * place with no other edit: trust.json, health-checks.json, the command line and the
 * persisted directories are checked field by field.
 */
import { expect, it } from "@effect/vitest"
import { runProcess } from "@nixfleet/dev/NixFixtures"
import { TrustConfig } from "@nixfleet/proto"
import { Effect, Schema } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { onPath } from "../../../scripts/nix/moduleEval.js"
import { HealthChecks } from "../src/probes/HealthChecks.js"
import {
  describeNeeding,
  evalDarwin,
  evalNixos,
  moduleEvalMissing,
  type NixosResult,
  refusal,
  type Settings
} from "./support/moduleEval.js"
import { accepted, parseArgv, systemdWords } from "./support/runParser.js"

const TIMEOUT = 60_000
const PROGRAM = "/nix/store/00000000000000000000000000000000-nixfleet-agent-0.1.0/bin/nixfleet-agent"
const URL_ = "https://cp.example.org:8443"

const FIXTURES = Path.resolve(__dirname, "fixtures")

/** The host's own /etc file `name` (environment.etc.<name>.text), as a module. */
const etcFile = (name: string, text: string) => ({ file: Path.join(FIXTURES, "etc-file.nix"), args: { name, text } })

const execStart = (result: NixosResult): ReadonlyArray<string> => {
  const line = result.service?.serviceConfig["ExecStart"]
  if (typeof line !== "string") throw new Error(`no ExecStart in ${JSON.stringify(result.service)}`)
  return systemdWords(line)
}

/** flag → value of an argv (flags given once). */
const flagValues = (argv: ReadonlyArray<string>) => {
  const values = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] ?? ""
    if (word.startsWith("--")) values.set(word, argv[i + 1] ?? "")
  }
  return values
}

const DEFAULT_ARGV = [
  "run",
  "--control-plane-url",
  URL_,
  "--machine-id",
  "web-01",
  "--trust-file",
  "/etc/nixfleet/agent/trust.json",
  "--manifest-freshness-window-secs",
  "3600",
  "--client-cert",
  "/var/lib/nixfleet/agent-cert.pem",
  "--client-key",
  "/etc/ssh/ssh_host_ed25519_key",
  "--state-dir",
  "/var/lib/nixfleet-agent",
  "--ssh-host-key-file",
  "/etc/ssh/ssh_host_ed25519_key",
  "--health-checks-file",
  "/etc/nixfleet/agent/health-checks.json",
  "--sustained-failure-secs",
  "120",
  "--verify-timeout-secs",
  "300",
  "--realise-timeout-secs",
  "3600",
  "--switch-method",
  "systemd-run",
  "--log-format",
  "json"
]

/** The sandbox of the systemd-run unit, but for ReadWritePaths (which follow the settings). */
const HARDENING = {
  ProtectSystem: "strict",
  ProtectHome: true,
  PrivateTmp: true,
  PrivateDevices: true,
  ProtectKernelTunables: true,
  ProtectKernelModules: true,
  ProtectKernelLogs: true,
  ProtectControlGroups: true,
  ProtectClock: true,
  ProtectHostname: true,
  ProtectProc: "invisible",
  PrivateMounts: true,
  RestrictNamespaces: true,
  RestrictRealtime: true,
  RestrictSUIDSGID: true,
  LockPersonality: true,
  SystemCallArchitectures: "native",
  SystemCallFilter: ["@system-service"],
  SystemCallErrorNumber: "EPERM",
  RestrictAddressFamilies: ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"],
  CapabilityBoundingSet: "",
  UMask: "0077"
}

/** `systemd-analyze security --offline=true` of the rendered unit: its overall exposure. */
const exposure = (unit: string) =>
  Effect.gen(function*() {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "unit-exposure-"))
    const file = Path.join(dir, "nixfleet-agent.service")
    Fs.writeFileSync(file, unit)
    const done = yield* Effect.ensuring(
      runProcess("systemd-analyze", ["security", "--offline=true", "--no-pager", file]),
      Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    const figure = /Overall exposure level for nixfleet-agent\.service: (\d+\.\d+)/.exec(done.stdout)
    if (figure?.[1] === undefined) {
      return yield* Effect.dieMessage(`systemd-analyze said:\n${done.stdout}${done.stderr}`)
    }
    return Number(figure[1])
  })

describeNeeding(
  moduleEvalMissing() ?? (onPath("systemd-analyze") ? undefined : "systemd-analyze (Debian: apt-get install systemd)"),
  "the unit's exposure in systemd-analyze security",
  () => {
    it.live(
      "systemd-run (the default): at most 5.0, the state directories and profiles writable; direct: unsandboxed, as it must be",
      () =>
        Effect.gen(function*() {
          const hardened = yield* evalNixos({
            controlPlaneUrl: URL_,
            stateDir: "/srv/nixfleet",
            metrics: { listen: null, textfile: "/var/lib/node-exporter/nixfleet.prom" }
          })
          const figure = yield* exposure(hardened.unit ?? "")
          yield* Effect.logInfo("exposure of the systemd-run unit").pipe(Effect.annotateLogs({ figure }))
          expect(figure).toBeLessThanOrEqual(5)
          expect(hardened.service?.serviceConfig).toMatchObject({
            ...HARDENING,
            ReadWritePaths: [
              "/nix/var/nix/profiles",
              "/srv/nixfleet",
              "-/var/lib/nixfleet",
              "-/var/lib/node-exporter"
            ]
          })
          const direct = yield* evalNixos({ controlPlaneUrl: URL_, switchMethod: "direct" })
          expect(yield* exposure(direct.unit ?? "")).toBeGreaterThan(9)
          expect(direct.service?.serviceConfig).not.toHaveProperty("ProtectSystem")
          expect(direct.service?.environment).not.toHaveProperty("NIX_REMOTE")
        }),
      TIMEOUT
    )
  }
)

describeNeeding(moduleEvalMissing(), "the NixOS module under lib.evalModules", () => {
  it.live(
    "defaults: a notify unit running `run` with the defaults, restarted once at the end of an activation that changes it",
    () =>
      Effect.gen(function*() {
        const result = yield* evalNixos({ controlPlaneUrl: URL_ })
        expect(execStart(result)).toStrictEqual([PROGRAM, ...DEFAULT_ARGV])
        expect(result.service).toMatchObject({
          description: "nixfleet host agent",
          wantedBy: ["multi-user.target"],
          after: ["network-online.target", "nix-daemon.service"],
          wants: ["network-online.target"],
          restartIfChanged: true,
          stopIfChanged: false,
          restartTriggers: [],
          startLimitIntervalSec: 0,
          environment: { XDG_CACHE_HOME: "/var/lib/nixfleet/.cache", NIX_REMOTE: "daemon" },
          path: [
            "/nix/store/00000000000000000000000000000000-nix",
            "/nix/store/00000000000000000000000000000000-systemd"
          ]
        })
        expect(result.service?.serviceConfig).toStrictEqual({
          Type: "notify",
          NotifyAccess: "main",
          ExecStart: expect.any(String),
          Restart: "always",
          RestartSec: 30,
          TimeoutStopSec: 60,
          StateDirectory: ["nixfleet", "nixfleet-agent"],
          StateDirectoryMode: "0700",
          NoNewPrivileges: true,
          WatchdogSec: "120s",
          ...HARDENING,
          ReadWritePaths: ["/nix/var/nix/profiles", "/var/lib/nixfleet-agent", "-/var/lib/nixfleet"]
        })
        expect(result.tmpfiles).toStrictEqual([])
        expect(result.etc).toStrictEqual({})
        expect(result.systemPackages).toStrictEqual([
          "/nix/store/00000000000000000000000000000000-nixfleet-agent-0.1.0"
        ])
        // The rendered unit carries what the module set.
        expect(result.unit).toContain("\nType=notify\n")
        // NixOS's switch restarts a changed unit after the activation unless it says
        // otherwise: no X-RestartIfChanged=false, and X-StopIfChanged=false.
        expect(result.unit).not.toContain("X-RestartIfChanged")
        expect(result.unit).toContain("\nX-StopIfChanged=false\n")
        expect(result.unit).not.toContain("X-Restart-Triggers")
        expect(result.persistence).toBeNull()
        expect(result.unit).toContain(`\nExecStart=${PROGRAM} run --control-plane-url ${URL_} `)
        // The agent's parser takes the unit's command line as it is.
        const options = accepted(yield* parseArgv(execStart(result).slice(1)), "the default ExecStart")
        expect(options).toMatchObject({ controlPlaneUrl: URL_, machineId: "web-01", switchMethod: "systemd-run" })
      }),
    TIMEOUT
  )

  it.live("machineId defaults to networking.hostName", () =>
    Effect.gen(function*() {
      const result = yield* evalNixos({ controlPlaneUrl: URL_ }, { hostName: "db-07" })
      expect(flagValues(execStart(result)).get("--machine-id")).toBe("db-07")
    }), TIMEOUT)

  it.live(
    "TLS and enrollment: every certificate flag, the token and renewal, as one word each",
    () =>
      Effect.gen(function*() {
        const result = yield* evalNixos({
          controlPlaneUrl: URL_,
          tls: { caCert: "/etc/nixfleet/cp ca.pem", clientCert: "/var/lib/nixfleet/cert.pem", clientKey: "/etc/key" },
          bootstrapTokenFile: "/run/secrets/token",
          renewalThresholdFraction: 0.5
        })
        const values = flagValues(execStart(result))
        expect(values.get("--ca-cert")).toBe("/etc/nixfleet/cp ca.pem")
        expect(values.get("--client-cert")).toBe("/var/lib/nixfleet/cert.pem")
        expect(values.get("--client-key")).toBe("/etc/key")
        expect(values.get("--bootstrap-token-file")).toBe("/run/secrets/token")
        expect(values.get("--renewal-threshold-fraction")).toBe("0.5")
        const options = accepted(yield* parseArgv(execStart(result).slice(1)), "the TLS ExecStart")
        expect(options).toMatchObject({
          caCert: { _tag: "Some", value: "/etc/nixfleet/cp ca.pem" },
          renewalThresholdFraction: { _tag: "Some", value: 0.5 }
        })
        // No TLS at all: no certificate flag.
        const plain = yield* evalNixos({ controlPlaneUrl: URL_, tls: { clientCert: null, clientKey: null } })
        expect(execStart(plain).filter((word) => /^--(ca-cert|client-cert|client-key)$/.test(word))).toStrictEqual([])
      }),
    TIMEOUT
  )

  it.live("probes and trust: /etc files the agent reads, in its own schema", () =>
    Effect.gen(function*() {
      const healthChecks = {
        nginx: { kind: "http", mode: "enforce", url: "http://127.0.0.1/health", intervalSeconds: 10 },
        sshd: { kind: "tcp", mode: "observe", port: 22 }
      }
      const trust = { schemaVersion: 1, ciReleaseKey: { current: { algorithm: "ed25519", public: "AAAA" } } }
      const result = yield* evalNixos({ controlPlaneUrl: URL_, healthChecks, trust })
      const declared = JSON.parse(result.etc["nixfleet/agent/health-checks.json"] ?? "null") as unknown
      expect(declared).toStrictEqual(healthChecks)
      const decoded = Schema.decodeUnknownSync(HealthChecks)(declared)
      expect(decoded["nginx"]).toMatchObject({ kind: "http", mode: "enforce", intervalSeconds: 10 })
      expect(decoded["sshd"]).toMatchObject({ kind: "tcp", mode: "observe", port: 22 })
      expect(JSON.parse(result.etc["nixfleet/agent/trust.json"] ?? "null")).toStrictEqual(trust)
      expect(flagValues(execStart(result)).get("--health-checks-file")).toBe("/etc/nixfleet/agent/health-checks.json")
    }), TIMEOUT)

  it.live("tags and environment reach the service's environment", () =>
    Effect.gen(function*() {
      const result = yield* evalNixos({
        controlPlaneUrl: URL_,
        tags: ["web", "eu-west"],
        environment: { NIXFLEET_AGENT_PROBE_TEST_MODE: "1" }
      })
      expect(result.service?.environment).toStrictEqual({
        XDG_CACHE_HOME: "/var/lib/nixfleet/.cache",
        NIX_REMOTE: "daemon",
        NIXFLEET_TAGS: "web,eu-west",
        NIXFLEET_AGENT_PROBE_TEST_MODE: "1"
      })
      expect(result.unit).toContain(`Environment="NIXFLEET_TAGS=web,eu-west"\n`)
    }), TIMEOUT)

  it.live("extraArgs come last, and the parser takes them", () =>
    Effect.gen(function*() {
      const result = yield* evalNixos({
        controlPlaneUrl: URL_,
        extraArgs: ["--current-system-path", "/run/booted-system", "--metrics-textfile", "/var/lib/x.prom"]
      })
      const argv = execStart(result)
      expect(argv.slice(-4)).toStrictEqual([
        "--current-system-path",
        "/run/booted-system",
        "--metrics-textfile",
        "/var/lib/x.prom"
      ])
      expect(accepted(yield* parseArgv(argv.slice(1)), "extraArgs")).toMatchObject({
        currentSystemPath: "/run/booted-system"
      })
    }), TIMEOUT)

  it.live(
    "a state directory outside /var/lib is a tmpfiles rule; under it, a StateDirectory",
    () =>
      Effect.gen(function*() {
        const outside = yield* evalNixos({ controlPlaneUrl: URL_, stateDir: "/srv/nixfleet agent" })
        expect(outside.tmpfiles).toStrictEqual(["d /srv/nixfleet agent 0700 root root -"])
        expect(outside.service?.serviceConfig["StateDirectory"]).toStrictEqual(["nixfleet"])
        expect(flagValues(execStart(outside)).get("--state-dir")).toBe("/srv/nixfleet agent")
        const nested = yield* evalNixos({ controlPlaneUrl: URL_, stateDir: "/var/lib/fleet/agent" })
        expect(nested.tmpfiles).toStrictEqual([])
        expect(nested.service?.serviceConfig["StateDirectory"]).toStrictEqual(["nixfleet", "fleet/agent"])
      }),
    TIMEOUT
  )

  it.live("watchdog off: no WatchdogSec; another value is passed as it is", () =>
    Effect.gen(function*() {
      const off = yield* evalNixos({ controlPlaneUrl: URL_, watchdogSec: null })
      expect(off.service?.serviceConfig).not.toHaveProperty("WatchdogSec")
      expect(off.unit).not.toContain("WatchdogSec")
      const short = yield* evalNixos({ controlPlaneUrl: URL_, watchdogSec: "10s" })
      expect(short.service?.serviceConfig["WatchdogSec"]).toBe("10s")
    }), TIMEOUT)

  it.live(
    "the reference module's pollInterval and complianceGate.mode pass their flags, which run accepts",
    () =>
      Effect.gen(function*() {
        const result = yield* evalNixos({
          controlPlaneUrl: URL_,
          pollInterval: 60,
          complianceGate: { mode: "enforce" }
        })
        const values = flagValues(execStart(result))
        expect(values.get("--poll-interval")).toBe("60")
        expect(values.get("--compliance-gate-mode")).toBe("enforce")
        expect(accepted(yield* parseArgv(execStart(result).slice(1)), "the reference flags")).toMatchObject({
          pollInterval: { _tag: "Some", value: 60 },
          complianceGateMode: { _tag: "Some", value: "enforce" }
        })
      }),
    TIMEOUT
  )

  it.live(
    "an activation that changes the unit restarts the agent only with the systemd-run switch; a CA in /etc is a restart trigger",
    () =>
      Effect.gen(function*() {
        // `direct`: the switch is the agent's child, in its cgroup; a restart would kill it.
        const direct = yield* evalNixos({ controlPlaneUrl: URL_, switchMethod: "direct" })
        expect(direct.service).toMatchObject({ restartIfChanged: false, stopIfChanged: false })
        expect(direct.unit).toContain("\nX-RestartIfChanged=false\n")

        // The CA shipped by the same configuration: its file is a trigger, so a new CA at
        // the same path changes the unit (the agent reads the CA at start only).
        const caCert = "/etc/nixfleet/fleet-ca.pem"
        const withCa = (pem: string) =>
          evalNixos({ controlPlaneUrl: URL_, tls: { caCert } }, { modules: [etcFile("nixfleet/fleet-ca.pem", pem)] })
        const first = yield* withCa("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n")
        const rotated = yield* withCa("-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n")
        expect(first.service?.restartTriggers).toStrictEqual([
          expect.stringMatching(/^\/nix\/store\/[0-9a-f]{32}-fleet-ca\.pem$/)
        ])
        const trigger = (unit: string | null) => /^X-Restart-Triggers=(\S+)$/m.exec(unit ?? "")?.[1]
        expect(trigger(first.unit)).toMatch(/^\/nix\/store\/[0-9a-f]{32}-X-Restart-Triggers-nixfleet-agent$/)
        expect(trigger(rotated.unit)).not.toBe(trigger(first.unit))
        expect(execStart(rotated)).toStrictEqual(execStart(first))
        // A CA from elsewhere (a secrets manager) is no trigger: its content is not known here.
        const elsewhere = yield* evalNixos({ controlPlaneUrl: URL_, tls: { caCert: "/run/secrets/ca.pem" } })
        expect(elsewhere.service?.restartTriggers).toStrictEqual([])
        // Nor are the probe declarations and the trust file: the agent re-reads them.
        const declared = yield* evalNixos({
          controlPlaneUrl: URL_,
          healthChecks: { sshd: { kind: "tcp", mode: "observe", port: 22 } },
          trust: { schemaVersion: 1, ciReleaseKey: {} }
        })
        expect(declared.service?.restartTriggers).toStrictEqual([])
      }),
    TIMEOUT
  )

  it.live(
    "effectiveHealthChecks, the reference module's option, is accepted without the framework: one file with healthChecks",
    () =>
      Effect.gen(function*() {
        const healthChecks = { sshd: { kind: "tcp", mode: "observe", port: 22 } }
        const effectiveHealthChecks = {
          nginx: { kind: "http", mode: "enforce", url: "http://127.0.0.1/health", intervalSeconds: 10 }
        }
        const result = yield* evalNixos({ controlPlaneUrl: URL_, healthChecks, effectiveHealthChecks })
        expect(JSON.parse(result.etc["nixfleet/agent/health-checks.json"] ?? "null")).toStrictEqual({
          ...healthChecks,
          ...effectiveHealthChecks
        })
        // Without the framework there is no nixfleet.trust: no trust.json unless `trust` is set.
        expect(result.etc).not.toHaveProperty(["nixfleet/agent/trust.json"])
        expect(
          yield* refusal("nixos", {
            controlPlaneUrl: URL_,
            healthChecks: { nginx: healthChecks.sshd },
            effectiveHealthChecks
          })
        ).toMatch(
          /- services\.nixfleet-agent: probe nginx is declared in both healthChecks and effectiveHealthChecks; keep one\./
        )
      }),
    TIMEOUT
  )

  it.live("enable = false: nothing at all", () =>
    Effect.gen(function*() {
      const result = yield* evalNixos({ enable: false, controlPlaneUrl: URL_ })
      expect(result).toStrictEqual({
        service: null,
        unit: null,
        tmpfiles: [],
        etc: {},
        systemPackages: [],
        persistence: null
      })
    }), TIMEOUT)

  it.live(
    "a wrong type fails with the module system's message naming the option and the type",
    () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [Record<string, unknown>, RegExp]> = [
          [
            { verifyTimeoutSecs: "300" },
            /option `services\.nixfleet-agent\.verifyTimeoutSecs' is not of type `integer between 1 and 359/
          ],
          [
            { verifyTimeoutSecs: 400 },
            /option `services\.nixfleet-agent\.verifyTimeoutSecs' is not of type `integer between 1 and 359/
          ],
          [{ tags: "web" }, /option `services\.nixfleet-agent\.tags' is not of type `list of string'/],
          [
            { switchMethod: "darwin" },
            /option `services\.nixfleet-agent\.switchMethod' is not of type `one of "systemd-run", "direct"'/
          ],
          [
            { logFormat: "text" },
            /option `services\.nixfleet-agent\.logFormat' is not of type `one of "json", "pretty"'/
          ],
          [
            { sustainedFailureSecs: 0 },
            /option `services\.nixfleet-agent\.sustainedFailureSecs' is not of type `positive integer/
          ],
          [
            { pollInterval: -1 },
            /option `services\.nixfleet-agent\.pollInterval' is not of type `null or \(unsigned integer/
          ],
          [
            { complianceGate: { mode: "strict" } },
            /option `services\.nixfleet-agent\.complianceGate\.mode' is not of type/
          ],
          [{ pollIntervall: 60 }, /option `services\.nixfleet-agent\.pollIntervall' does not exist/]
        ]
        for (const [settings, message] of cases) {
          expect(yield* refusal("nixos", { controlPlaneUrl: URL_, ...settings }), JSON.stringify(settings)).toMatch(
            message
          )
        }
      }),
    TIMEOUT
  )

  it.live("a missing value fails with the module system's message", () =>
    Effect.gen(function*() {
      expect(yield* refusal("nixos", {})).toMatch(
        /option `services\.nixfleet-agent\.controlPlaneUrl' was accessed but has no value defined/
      )
      // No host name to default the machine id to.
      expect(yield* refusal("nixos", { controlPlaneUrl: URL_ }, { hostName: null })).toMatch(
        /option `networking\.hostName' was accessed but has no value defined/
      )
    }), TIMEOUT)

  it.live("a refused combination fails with the assertion's or the renderer's message", () =>
    Effect.gen(function*() {
      expect(yield* refusal("nixos", { controlPlaneUrl: URL_, renewalThresholdFraction: 1.5 })).toMatch(
        /Failed assertions:\n\s*- services\.nixfleet-agent\.renewalThresholdFraction must be strictly between 0 and 1/
      )
      expect(
        yield* refusal("nixos", { controlPlaneUrl: URL_, trust: { schemaVersion: 1 }, trustFile: "/etc/other.json" })
      ).toMatch(/- services\.nixfleet-agent\.trust is rendered to \/etc\/nixfleet\/agent\/trust\.json/)
      expect(yield* refusal("nixos", { controlPlaneUrl: URL_, machineId: "" })).toMatch(
        /- services\.nixfleet-agent\.machineId must be set/
      )
      for (const extraArgs of [["--state-dir", "/elsewhere"], ["--machine-id=web-02"], ["--log-format", "json"]]) {
        expect(yield* refusal("nixos", { controlPlaneUrl: URL_, extraArgs }), extraArgs.join(" ")).toMatch(
          /nixfleet-agent: flag given twice \(check extraArgs\): --/
        )
      }
      expect(yield* refusal("nixos", { controlPlaneUrl: URL_, pollInterval: 5, extraArgs: ["--poll-interval", "6"] }))
        .toMatch(/flag given twice \(check extraArgs\): --poll-interval/)
    }), TIMEOUT)
})

describeNeeding(moduleEvalMissing(), "the nix-darwin module under lib.evalModules", () => {
  it.live(
    "defaults: the launchd daemon runs `run` from the package's store path (an upgrade changes the plist), with the darwin switch",
    () =>
      Effect.gen(function*() {
        const result = yield* evalDarwin({ controlPlaneUrl: URL_ }, { hostName: "mac-01" })
        const argv = result.daemon?.["ProgramArguments"] as ReadonlyArray<string>
        expect(argv.slice(0, 2)).toStrictEqual([PROGRAM, "run"])
        expect(flagValues(argv).get("--machine-id")).toBe("mac-01")
        expect(flagValues(argv).get("--switch-method")).toBe("darwin")
        expect(result.daemon).toMatchObject({
          Label: "com.nixfleet.agent",
          KeepAlive: true,
          RunAtLoad: true,
          ThrottleInterval: 10,
          ExitTimeOut: 30,
          WorkingDirectory: "/var/lib/nixfleet",
          EnvironmentVariables: {
            PATH: "/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin:/usr/bin:/bin",
            XDG_CACHE_HOME: "/var/lib/nixfleet/.cache"
          }
        })
        expect(result.preActivation).toContain("mkdir -p /var/lib/nixfleet /var/lib/nixfleet-agent")
        expect(accepted(yield* parseArgv(argv.slice(1)), "the darwin ProgramArguments")).toMatchObject({
          switchMethod: "darwin",
          machineId: "mac-01"
        })
      }),
    TIMEOUT
  )

  it.live("tags, a state directory elsewhere and the reference flags", () =>
    Effect.gen(function*() {
      const result = yield* evalDarwin({
        controlPlaneUrl: URL_,
        machineId: "mac-02",
        tags: ["build"],
        stateDir: "/usr/local/var/nixfleet",
        pollInterval: 30,
        complianceGate: { mode: "auto" }
      })
      const argv = result.daemon?.["ProgramArguments"] as ReadonlyArray<string>
      expect(flagValues(argv).get("--state-dir")).toBe("/usr/local/var/nixfleet")
      expect(flagValues(argv).get("--poll-interval")).toBe("30")
      expect(result.daemon?.["EnvironmentVariables"]).toMatchObject({ NIXFLEET_TAGS: "build" })
      expect(result.preActivation).toContain("/usr/local/var/nixfleet")
    }), TIMEOUT)

  it.live(
    "nix-darwin has no networking.hostName by default: machineId must be set, and the wrong switch is refused",
    () =>
      Effect.gen(function*() {
        expect(yield* refusal("darwin", { controlPlaneUrl: URL_ }, { hostName: null })).toMatch(
          /Failed assertions:\n\s*- services\.nixfleet-agent\.machineId must be set/
        )
        expect(yield* refusal("darwin", { controlPlaneUrl: URL_, machineId: "m", switchMethod: "systemd-run" }))
          .toMatch(
            /option `services\.nixfleet-agent\.switchMethod' is not of type `one of "darwin", "direct"'/
          )
        expect(yield* refusal("darwin", { controlPlaneUrl: URL_, machineId: "m", watchdogSec: "1s" })).toMatch(
          /option `services\.nixfleet-agent\.watchdogSec' does not exist/
        )
      }),
    TIMEOUT
  )
})

// ---------------------------------------------------------------------------------------
// A host of the reference framework, built as its mkHost builds one
// ---------------------------------------------------------------------------------------

const UPSTREAM_HOST = Path.join(FIXTURES, "upstream-host.nix")

/** The evaluation options of a host built by the framework's mkHost, named web-07. */
const upstreamHost = (args: Readonly<Record<string, unknown>> = {}, platform: "nixos" | "darwin" = "nixos") => ({
  // The framework names the host (hostSpec.hostName; on NixOS also networking.hostName).
  hostName: null,
  modules: [{ file: UPSTREAM_HOST, args: { platform, hostName: "web-07", ...args } }]
})

const CI_P256 = "A".repeat(86) + "=="
const CI_ED25519 = "GxWIOfiqM56Ju1CxYD6Q7Gjg/VVl/hCnyzJyn933Bwo="
const ORG_ROOT = "6Hy0XAWtOJ1YkE6jmDRcJLUPRsFdQS0PZx5mt2YkfTk="
const CACHE_KEY = "cache.example.org-1:Xh7O4Gp/wG8wWuXBKs/np/Z7js5692ky7Tr6sAw8aSE="

/** nixfleet.trust as a fleet declares it: a CI key mid-rotation, a cache key, the org root key. */
const FLEET_TRUST = {
  ciReleaseKey: {
    current: { algorithm: "ecdsa-p256", public: CI_P256 },
    previous: { algorithm: "ed25519", public: CI_ED25519 },
    rejectBefore: "2026-01-01T00:00:00Z"
  },
  cacheKeys: [CACHE_KEY],
  orgRootKey: { current: ORG_ROOT }
}

/** What the reference framework's `_trust-json.nix` makes of FLEET_TRUST. */
const FLEET_TRUST_JSON = {
  schemaVersion: 1,
  ciReleaseKey: {
    current: { algorithm: "ecdsa-p256", public: CI_P256 },
    previous: { algorithm: "ed25519", public: CI_ED25519 },
    rejectBefore: "2026-01-01T00:00:00Z"
  },
  cacheKeys: [CACHE_KEY],
  orgRootKey: {
    current: { algorithm: "ed25519", public: ORG_ROOT },
    previous: null,
    rejectBefore: null
  }
}

/** fleet.resolved.effectiveHealthChecks.web-07, which mkHost passes to the agent module. */
const RESOLVED_PROBES = {
  nginx: { kind: "http", mode: "enforce", url: "http://127.0.0.1/health", intervalSeconds: 10 },
  sshd: { kind: "tcp", mode: "observe", port: 22 }
}

/** The framework's persistence baseline (nixfleet.persistence.enable). */
const BASELINE = [
  "/etc/nixos",
  "/etc/NetworkManager/system-connections",
  "/var/lib/systemd",
  "/var/lib/nixos",
  "/var/log"
]

/** An operator's services.nixfleet-agent for the reference module, unchanged. */
const REFERENCE_SETTINGS: Settings = {
  enable: true,
  controlPlaneUrl: URL_,
  renewalThresholdFraction: 0.5,
  manifestFreshnessWindowSecs: 31536000,
  tls: {
    caCert: "/etc/nixfleet/fleet-ca.pem",
    clientCert: "/var/lib/nixfleet/agent-cert.pem",
    clientKey: "/etc/ssh/ssh_host_ed25519_key"
  },
  bootstrapTokenFile: "/run/secrets/bootstrap-token-web-07",
  stateDir: "/var/lib/nixfleet-agent",
  sshHostKeyFile: "/etc/ssh/ssh_host_ed25519_key",
  tags: ["web"]
}

const trustJson = (etc: Readonly<Record<string, string | null>>) =>
  JSON.parse(etc["nixfleet/agent/trust.json"] ?? "null") as unknown

describeNeeding(moduleEvalMissing(), "in place of the reference agent module on a host built by mkHost", () => {
  it.live(
    "no other edit: trust.json from nixfleet.trust, probes from effectiveHealthChecks, machineId from hostSpec, state persisted",
    () =>
      Effect.gen(function*() {
        const result = yield* evalNixos(
          REFERENCE_SETTINGS,
          upstreamHost({
            effectiveHealthChecks: RESOLVED_PROBES,
            trust: FLEET_TRUST,
            persistence: { enable: true },
            // hostSpec names the host in the fleet even where networking.hostName differs.
            networkingHostName: "web-07-eth0"
          })
        )
        // trust.json: the reference rendering, field by field, and the agent reads it.
        const trust = trustJson(result.etc)
        expect(trust).toStrictEqual(FLEET_TRUST_JSON)
        expect(Schema.decodeUnknownSync(TrustConfig)(trust)).toMatchObject({
          schemaVersion: 1,
          ciReleaseKey: { current: { algorithm: "ecdsa-p256" }, previous: { algorithm: "ed25519" } },
          orgRootKey: { current: { algorithm: "ed25519", public: ORG_ROOT } },
          cacheKeys: [CACHE_KEY]
        })
        // health-checks.json: the resolved probes as they are, in the agent's schema.
        const probes = JSON.parse(result.etc["nixfleet/agent/health-checks.json"] ?? "null") as unknown
        expect(probes).toStrictEqual(RESOLVED_PROBES)
        expect(Object.keys(Schema.decodeUnknownSync(HealthChecks)(probes))).toStrictEqual(["nginx", "sshd"])
        expect(result.etc).toStrictEqual({
          "nixfleet/agent/trust.json": expect.any(String),
          "nixfleet/agent/health-checks.json": expect.any(String)
        })
        // The command line, which the agent's parser takes.
        const argv = execStart(result)
        expect(argv.slice(1)).toStrictEqual([
          "run",
          "--control-plane-url",
          URL_,
          "--machine-id",
          "web-07",
          "--trust-file",
          "/etc/nixfleet/agent/trust.json",
          "--manifest-freshness-window-secs",
          "31536000",
          "--renewal-threshold-fraction",
          "0.5",
          "--ca-cert",
          "/etc/nixfleet/fleet-ca.pem",
          "--client-cert",
          "/var/lib/nixfleet/agent-cert.pem",
          "--client-key",
          "/etc/ssh/ssh_host_ed25519_key",
          "--bootstrap-token-file",
          "/run/secrets/bootstrap-token-web-07",
          "--state-dir",
          "/var/lib/nixfleet-agent",
          "--ssh-host-key-file",
          "/etc/ssh/ssh_host_ed25519_key",
          "--health-checks-file",
          "/etc/nixfleet/agent/health-checks.json",
          "--sustained-failure-secs",
          "120",
          "--verify-timeout-secs",
          "300",
          "--realise-timeout-secs",
          "3600",
          "--switch-method",
          "systemd-run",
          "--log-format",
          "json"
        ])
        expect(accepted(yield* parseArgv(argv.slice(1)), "the upstream host's ExecStart")).toMatchObject({
          machineId: "web-07",
          trustFile: "/etc/nixfleet/agent/trust.json"
        })
        expect(result.service?.environment).toMatchObject({ NIXFLEET_TAGS: "web" })
        // Persisted: the framework's baseline, then the agent's state and certificate.
        expect(result.persistence).toStrictEqual([...BASELINE, "/var/lib/nixfleet", "/var/lib/nixfleet-agent"])
      }),
    TIMEOUT
  )

  it.live(
    "a fleet that pins no key yet gets trust.json with every slot null, as the reference renders it; no probe, no file",
    () =>
      Effect.gen(function*() {
        const result = yield* evalNixos({ controlPlaneUrl: URL_ }, upstreamHost())
        expect(trustJson(result.etc)).toStrictEqual({
          schemaVersion: 1,
          ciReleaseKey: { current: null, previous: null, rejectBefore: null },
          cacheKeys: [],
          orgRootKey: { current: null, previous: null, rejectBefore: null }
        })
        expect(Schema.decodeUnknownSync(TrustConfig)(trustJson(result.etc))).toMatchObject({ schemaVersion: 1 })
        expect(result.etc).not.toHaveProperty(["nixfleet/agent/health-checks.json"])
        // Persistence off: the agent's directories are listed all the same (as the reference
        // module lists its own); the persistence implementation acts only when it is on.
        expect(result.persistence).toStrictEqual(["/var/lib/nixfleet", "/var/lib/nixfleet-agent"])
        // The framework's own assertions still apply.
        expect(
          yield* refusal(
            "nixos",
            { controlPlaneUrl: URL_ },
            upstreamHost({ trust: { orgRootKey: { previous: ORG_ROOT } } })
          )
        ).toMatch(/- nixfleet\.trust\.orgRootKey: cannot set \.previous without \.current/)
      }),
    TIMEOUT
  )

  it.live(
    "this module's own trust option wins over nixfleet.trust; a path-literal trustFile is copied into the store",
    () =>
      Effect.gen(function*() {
        const own = { schemaVersion: 1, ciReleaseKey: { current: { algorithm: "ed25519", public: CI_ED25519 } } }
        const overridden = yield* evalNixos({ controlPlaneUrl: URL_, trust: own }, upstreamHost({ trust: FLEET_TRUST }))
        expect(trustJson(overridden.etc)).toStrictEqual(own)

        // `trustFile = ./upstream-trust.json;` (the reference module's types.path takes it).
        const literal = yield* evalNixos(
          { controlPlaneUrl: URL_ },
          upstreamHost({ trust: FLEET_TRUST, trustFileLiteral: true })
        )
        const trustFile = flagValues(execStart(literal)).get("--trust-file")
        expect(trustFile).toMatch(/^\/nix\/store\/[0-9a-df-np-sv-z]{32}-upstream-trust\.json$/)
        expect(accepted(yield* parseArgv(execStart(literal).slice(1)), "a path-literal trustFile")).toMatchObject({
          trustFile
        })
        // /etc/nixfleet/agent/trust.json is rendered all the same, as by the reference module.
        expect(trustJson(literal.etc)).toStrictEqual(FLEET_TRUST_JSON)
        // A relative string is no path.
        expect(yield* refusal("nixos", { controlPlaneUrl: URL_, trustFile: "trust.json" }, upstreamHost())).toMatch(
          /option `services\.nixfleet-agent\.trustFile' is not of type `absolute path'/
        )
      }),
    TIMEOUT
  )

  it.live(
    "a state directory and a certificate elsewhere are persisted too; nothing under /run; a disabled agent adds nothing",
    () =>
      Effect.gen(function*() {
        const persisted = (settings: Settings) =>
          Effect.map(
            evalNixos({ controlPlaneUrl: URL_, ...settings }, upstreamHost({ persistence: { enable: true } })),
            (result) => result.persistence?.slice(BASELINE.length)
          )
        expect(yield* persisted({ stateDir: "/srv/nixfleet-agent", tls: { clientCert: "/var/lib/certs/agent.pem" } }))
          .toStrictEqual(["/var/lib/nixfleet", "/srv/nixfleet-agent", "/var/lib/certs"])
        // Inside a persisted directory: nothing more.
        expect(
          yield* persisted({ stateDir: "/var/lib/nixfleet/agent", tls: { clientCert: "/var/lib/nixfleet/a.pem" } })
        )
          .toStrictEqual(["/var/lib/nixfleet"])
        // /run is a tmpfs on purpose (secrets managers mount there): never persisted.
        expect(yield* persisted({ tls: { clientCert: "/run/agenix/agent-cert.pem" } })).toStrictEqual([
          "/var/lib/nixfleet",
          "/var/lib/nixfleet-agent"
        ])
        // mkHost imports the agent module on every host; disabled, it adds nothing.
        const disabled = yield* evalNixos(
          { enable: false },
          upstreamHost({ trust: FLEET_TRUST, persistence: { enable: true }, effectiveHealthChecks: RESOLVED_PROBES })
        )
        expect(disabled).toMatchObject({ service: null, etc: {}, persistence: BASELINE })
      }),
    TIMEOUT
  )

  it.live(
    "nix-darwin: machineId from hostSpec, trust.json from nixfleet.trust, probes, no persistence schema",
    () =>
      Effect.gen(function*() {
        const result = yield* evalDarwin(
          { enable: true, controlPlaneUrl: URL_ },
          upstreamHost({ trust: FLEET_TRUST, effectiveHealthChecks: RESOLVED_PROBES }, "darwin")
        )
        const argv = result.daemon?.["ProgramArguments"] as ReadonlyArray<string>
        expect(flagValues(argv).get("--machine-id")).toBe("web-07")
        expect(trustJson(result.etc)).toStrictEqual(FLEET_TRUST_JSON)
        expect(JSON.parse(result.etc["nixfleet/agent/health-checks.json"] ?? "null")).toStrictEqual(RESOLVED_PROBES)
        expect(result.persistence).toBeNull()
        expect(accepted(yield* parseArgv(argv.slice(1)), "the darwin upstream host")).toMatchObject({
          machineId: "web-07",
          switchMethod: "darwin"
        })
      }),
    TIMEOUT
  )
})
