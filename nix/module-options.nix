# services.nixfleet-agent: the options NixOS and nix-darwin share, and the configuration
# that does not depend on the service manager (assertions, /etc files, the CLI on PATH).
#
# A drop-in for the reference framework's agent module: on a host built by its `mkHost`
# (which declares `hostSpec`, `nixfleet.trust` and `nixfleet.persistence`, and sets
# `effectiveHealthChecks`), the same configuration evaluates with no other edit. Those
# options are looked up in `options`, never assumed, so a host without the framework
# evaluates too.
#
# agentPackage: pkgs -> the default package.
# switchMethods, defaultSwitchMethod: what the platform's module allows.
{
  agentPackage,
  switchMethods,
  defaultSwitchMethod,
}:
{
  config,
  options,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption types literalExpression;
  cfg = config.services.nixfleet-agent;
  defaults = (import ./agent-args.nix).defaults;
  json = (pkgs.formats.json { }).type;

  # The reference framework's options, when the host declares them.
  declared = path: lib.hasAttrByPath path options;
  frameworkHostName = declared [
    "hostSpec"
    "hostName"
  ];
  frameworkTrust = declared [
    "nixfleet"
    "trust"
  ];
  frameworkPersistence = declared [
    "nixfleet"
    "persistence"
    "directories"
  ];

  # trust.json from `nixfleet.trust`, in the shape the reference framework renders it
  # (its `_trust-json.nix`): `ciReleaseKey` as declared (typed keys), `cacheKeys`, and the
  # bare-string `orgRootKey` keys wrapped as ed25519 keys. Every slot field is written,
  # null when unset, as there.
  frameworkTrustJson =
    let
      trust = config.nixfleet.trust;
      ed25519 =
        key:
        if key == null then
          null
        else
          {
            algorithm = "ed25519";
            public = key;
          };
    in
    {
      schemaVersion = 1;
      inherit (trust) ciReleaseKey cacheKeys;
      orgRootKey = {
        current = ed25519 trust.orgRootKey.current;
        previous = ed25519 trust.orgRootKey.previous;
        inherit (trust.orgRootKey) rejectBefore;
      };
    };
  trustJson =
    if cfg.trust != null then
      cfg.trust
    else if frameworkTrust then
      frameworkTrustJson
    else
      null;

  # One probe file from both declarations: healthChecks (this module's) and
  # effectiveHealthChecks (what the framework's mkHost resolves from the fleet).
  probes = cfg.healthChecks // cfg.effectiveHealthChecks;
  probesInBoth = lib.attrNames (lib.intersectAttrs cfg.healthChecks cfg.effectiveHealthChecks);

  # What the agent writes and must find again after a reboot on an impermanent host: its
  # state directory, /var/lib/nixfleet (the client certificate's default place and Nix's
  # cache) and the client certificate's directory (the bootstrap token is one-shot: a lost
  # certificate cannot be enrolled again). Nothing under /run: it is a tmpfs on purpose
  # (secrets managers mount there), and persisting it would hide what they put there.
  persisted =
    let
      candidates = lib.unique (
        [
          "/var/lib/nixfleet"
          cfg.stateDir
        ]
        ++ lib.optional (cfg.tls.clientCert != null) (dirOf cfg.tls.clientCert)
      );
      within = parent: dir: parent != dir && lib.hasPrefix "${lib.removeSuffix "/" parent}/" dir;
      covered = dir: lib.any (parent: within parent dir) candidates;
    in
    lib.filter (dir: dir != "/" && !(lib.hasPrefix "/run/" dir) && !(covered dir)) candidates;

  # File locations are strings, not Nix paths: a path would copy the file (a key, a token)
  # into the world-readable store. The trust file alone also takes a path (public keys).
  file =
    type: default: description:
    mkOption { inherit type default description; };

  etcName = lib.removePrefix "/etc/";
in
{
  _file = ./module-options.nix;

  options.services.nixfleet-agent = {
    enable = lib.mkEnableOption "the nixfleet host agent";

    package = mkOption {
      type = types.package;
      default = agentPackage pkgs;
      defaultText = literalExpression "nixfleet-agent.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = "The nixfleet-agent package.";
    };

    controlPlaneUrl = mkOption {
      type = types.str;
      example = "https://cp.example.org:8443";
      description = "The control plane (`--control-plane-url`).";
    };

    machineId = mkOption {
      type = types.nullOr types.str;
      default = if frameworkHostName then config.hostSpec.hostName else config.networking.hostName;
      defaultText = literalExpression "config.hostSpec.hostName (where the host declares hostSpec), else config.networking.hostName";
      description = "This host's name in the fleet; must equal its certificate's CN (`--machine-id`).";
    };

    # A path literal (`./trust.json`, as the reference module's `types.path` allows) is
    # copied into the store, so the file is in the system closure wherever it is built; it
    # holds public keys only.
    trustFile = file types.path defaults.trustFile ''
      Trust roots for signed artifacts (`--trust-file`): an absolute path string, or a path
      literal (copied into the store). The agent reads it at start and again on every
      verification, so a new file takes effect without a restart.
    '';

    trust = mkOption {
      type = types.nullOr json;
      default = null;
      example = literalExpression ''
        {
          schemaVersion = 1;
          ciReleaseKey.current = { algorithm = "ed25519"; public = "…"; };
        }
      '';
      description = ''
        The trust configuration (camelCase, as the control plane writes it), rendered to
        {file}`${defaults.trustFile}`. Null: rendered from `nixfleet.trust` where the host
        declares it (the reference framework), else the file is provided some other way.
      '';
    };

    manifestFreshnessWindowSecs = mkOption {
      type = types.ints.positive;
      default = defaults.manifestFreshnessWindowSecs;
      description = "How old a signed manifest may be, plus 60 s of clock skew (`--manifest-freshness-window-secs`).";
    };

    renewalThresholdFraction = mkOption {
      type = types.nullOr types.float;
      default = defaults.renewalThresholdFraction;
      example = 0.5;
      description = ''
        Renew the client certificate when less than this fraction of its validity remains,
        strictly between 0 and 1 (`--renewal-threshold-fraction`). Null disables renewal.
      '';
    };

    tls = {
      caCert = file (types.nullOr types.str) defaults.tls.caCert "Extra CA for the control plane, trusted alongside the system roots (`--ca-cert`).";
      clientCert = file (types.nullOr types.str) defaults.tls.clientCert ''
        The mTLS certificate (`--client-cert`), written by enrollment and renewal. Must be
        writable and persistent: the bootstrap token is one-shot.
      '';
      clientKey = file (types.nullOr types.str) defaults.tls.clientKey ''
        The mTLS key (`--client-key`): PEM, or the host's OpenSSH ed25519 key (the control
        plane refuses a CSR whose key is not the host's declared SSH key).
      '';
    };

    bootstrapTokenFile = file (types.nullOr types.str) defaults.bootstrapTokenFile "First-boot enrollment token (`--bootstrap-token-file`).";

    stateDir = mkOption {
      type = types.str;
      default = defaults.stateDir;
      description = "Outbox, manifest caches, GC roots and switch logs (`--state-dir`).";
    };

    sshHostKeyFile = file types.str defaults.sshHostKeyFile "The host's OpenSSH ed25519 key: renewal CSRs, evidence signatures (`--ssh-host-key-file`).";

    healthChecks = mkOption {
      type = types.attrsOf json;
      default = { };
      example = literalExpression ''
        {
          nginx = { kind = "http"; mode = "enforce"; url = "http://127.0.0.1/health"; intervalSeconds = 10; };
        }
      '';
      description = ''
        Probe declarations keyed by probe name, rendered to
        {file}`${defaults.healthChecksFile}` (`--health-checks-file`) when not empty. The
        agent reads the file again on every probe reset, so a new declaration needs no
        restart.
      '';
    };

    effectiveHealthChecks = mkOption {
      type = types.attrsOf json;
      default = { };
      description = ''
        The probes the reference framework's `mkHost` resolves for this host from the fleet
        (host > tag > fleet), set by it on every host. Rendered into the same file as
        `healthChecks`; a probe name may be declared in one of the two only.
      '';
    };

    sustainedFailureSecs = mkOption {
      type = types.ints.positive;
      default = defaults.sustainedFailureSecs;
      description = "How long an enforce probe may fail before the soak fails (`--sustained-failure-secs`).";
    };

    verifyTimeoutSecs = mkOption {
      type = types.ints.between 1 359;
      default = defaults.verifyTimeoutSecs;
      description = "Verify budget; below the control plane's 360 s confirm deadline (`--verify-timeout-secs`).";
    };

    realiseTimeoutSecs = mkOption {
      type = types.ints.positive;
      default = defaults.realiseTimeoutSecs;
      description = "Budget for `nix-store --realise` of a target closure (`--realise-timeout-secs`).";
    };

    switchMethod = mkOption {
      type = types.enum switchMethods;
      default = defaultSwitchMethod;
      description = ''
        How the switch is fired (`--switch-method`). `direct` starts it as a detached child
        of the agent: under a service manager that stops the agent's whole process group or
        cgroup, stopping the agent stops the switch too. On NixOS, `systemd-run` (the
        default) also sandboxes the agent's own unit (read-only system, no capabilities,
        Nix through nix-daemon: `systemd-analyze security` exposure under 5), since the
        switch and the rollback run in transient units with full rights; with `direct` the
        switch runs inside the agent's unit, which therefore stays unsandboxed.
      '';
    };

    logFormat = mkOption {
      type = types.enum [
        "json"
        "pretty"
      ];
      default = defaults.logFormat;
      description = "`json`: one object per line (journald, log shippers); `pretty`: for people (`--log-format`).";
    };

    metrics = {
      listen = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "9464";
        description = ''
          Serve Prometheus metrics on `GET /metrics` at `[host:]port`; a bare port listens on
          127.0.0.1 (`--metrics-listen`). Off when null.
        '';
      };
      textfile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/var/lib/prometheus-node-exporter-text-files/nixfleet-agent.prom";
        description = ''
          Also write the metrics to this node_exporter textfile every 15 s; its directory must
          exist (`--metrics-textfile`). Off when null.
        '';
      };
    };

    # The reference module's options that the agent accepts but gives no meaning (it logs a
    # warning naming each at start): configurations written for that module evaluate
    # unchanged. Null passes no flag.
    pollInterval = mkOption {
      type = types.nullOr types.ints.unsigned;
      default = null;
      description = "Accepted for the reference module's configurations; `--poll-interval` has no effect here (dispatches are long-polled).";
    };

    complianceGate.mode = mkOption {
      type = types.nullOr (
        types.enum [
          "auto"
          "disabled"
          "permissive"
          "enforce"
        ]
      );
      default = null;
      description = "Accepted for the reference module's configurations; `--compliance-gate-mode` has no effect here (evidence probes carry their own mode).";
    };

    tags = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Host tags, passed comma-separated in `NIXFLEET_TAGS`.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--current-system-path"
        "/run/current-system"
      ];
      description = "More `run` flags. A flag the options above already pass is refused at evaluation.";
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Extra environment variables for the agent.";
    };
  };

  config = lib.mkMerge [
    (lib.mkIf cfg.enable {
      assertions = [
        {
          assertion = cfg.machineId != null && cfg.machineId != "";
          message = "services.nixfleet-agent.machineId must be set (it defaults to hostSpec.hostName or networking.hostName).";
        }
        {
          assertion =
            cfg.renewalThresholdFraction == null
            || (cfg.renewalThresholdFraction > 0 && cfg.renewalThresholdFraction < 1);
          message = "services.nixfleet-agent.renewalThresholdFraction must be strictly between 0 and 1.";
        }
        {
          assertion = cfg.trust == null || cfg.trustFile == defaults.trustFile;
          message = "services.nixfleet-agent.trust is rendered to ${defaults.trustFile}; leave trustFile at that path.";
        }
        {
          assertion = probesInBoth == [ ];
          message = "services.nixfleet-agent: probe ${lib.concatStringsSep ", " probesInBoth} is declared in both healthChecks and effectiveHealthChecks; keep one.";
        }
      ];

      # The reference module always renders trust.json from nixfleet.trust, whatever
      # trustFile says; so does this one where the host has that option.
      environment.etc = lib.mkMerge [
        (lib.mkIf (trustJson != null) {
          ${etcName defaults.trustFile}.text = builtins.toJSON trustJson;
        })
        (lib.mkIf (probes != { }) {
          ${etcName defaults.healthChecksFile}.text = builtins.toJSON probes;
        })
      ];

      # `nixfleet-agent status` for operators.
      environment.systemPackages = [ cfg.package ];
    })

    # Only where the host declares the option: setting an undeclared one fails evaluation.
    (lib.optionalAttrs frameworkPersistence {
      nixfleet.persistence.directories = lib.mkIf cfg.enable persisted;
    })
  ];
}
