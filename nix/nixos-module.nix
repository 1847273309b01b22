# services.nixfleet-agent on NixOS: the agent as a systemd service.
#
# packaging/nixfleet-agent.service is this module's unit for packaging/sample-settings.nix,
# generated through nixpkgs' module system by nix/reference-unit.nix; the tests check it
# is current and run the unit under a real systemd.
{ agentPackage }:
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.nixfleet-agent;
  agentArgs = import ./agent-args.nix;

  # The health-checks file is passed even when no probe is declared: a missing file
  # declares no probes.
  settings = cfg // {
    inherit (agentArgs.defaults) healthChecksFile;
  };

  # systemd creates (0700, root) what it manages under /var/lib; a state directory
  # elsewhere gets a tmpfiles rule instead.
  stateDirectory = lib.removePrefix "/var/lib/" cfg.stateDir;
  managedStateDir = lib.hasPrefix "/var/lib/" cfg.stateDir && stateDirectory != "";

  # The control plane's CA, when this configuration puts it in /etc: the agent reads it at
  # start only, so a new CA at the same path must restart it.
  caEtcName = lib.removePrefix "/etc/" cfg.tls.caCert;
  caEtc =
    if cfg.tls.caCert != null && lib.hasPrefix "/etc/" cfg.tls.caCert then
      config.environment.etc.${caEtcName} or null
    else
      null;

  # The sandbox of the agent's own unit, with the systemd-run switch only: there the switch
  # and the rollback (and `switch-to-configuration boot`) run in transient units that PID 1
  # starts with full rights, outside this sandbox, so the agent itself needs no more than
  # to read the system, write its own files, talk to nix-daemon and systemd over their
  # sockets and reach the control plane. With `direct` the switch is the agent's child and
  # inherits whatever confines the agent: any of this would break it, so `direct` gets none.
  hardened = cfg.switchMethod == "systemd-run";
  hardening = {
    # Read-only /, /usr, /etc, /boot; writable: the state directories (StateDirectory),
    # these, and /dev/shm. The system profile's generations are links the Nix client
    # writes; the store, its database and GC roots are written by nix-daemon (NIX_REMOTE).
    ProtectSystem = "strict";
    ReadWritePaths =
      [
        "/nix/var/nix/profiles"
        cfg.stateDir
      ]
      # Optional ("-"): a missing directory is the agent's error to report, with its path,
      # not a namespace failure at start.
      ++ lib.optional (cfg.tls.clientCert != null) "-${dirOf cfg.tls.clientCert}"
      ++ lib.optional (cfg.metrics.textfile != null) "-${dirOf cfg.metrics.textfile}";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    PrivateMounts = true;
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    # Not MemoryDenyWriteExecute: V8's JIT writes the code it then runs.
    SystemCallArchitectures = "native";
    SystemCallFilter = [ "@system-service" ];
    SystemCallErrorNumber = "EPERM";
    # Unix sockets (nix-daemon, D-Bus, sd_notify, the status socket), IP (control plane,
    # metrics, probes), netlink (interface lookups).
    RestrictAddressFamilies = [
      "AF_UNIX"
      "AF_INET"
      "AF_INET6"
      "AF_NETLINK"
    ];
    # Root owns every file the agent touches: it needs no capability at all. Exec probes
    # run with the same (none): a probe that needs one is a unit of its own to query.
    CapabilityBoundingSet = "";
    UMask = "0077";
  };
in
{
  _file = ./nixos-module.nix;

  imports = [
    (import ./module-options.nix {
      inherit agentPackage;
      switchMethods = [
        "systemd-run"
        "direct"
      ];
      defaultSwitchMethod = "systemd-run";
    })
  ];

  options.services.nixfleet-agent.watchdogSec = lib.mkOption {
    type = lib.types.nullOr lib.types.str;
    default = "120s";
    description = ''
      systemd's WatchdogSec: the agent sends WATCHDOG=1 at half this interval, and systemd
      restarts it when they stop. Null disables the watchdog.
    '';
  };

  config = lib.mkIf cfg.enable {
    systemd.tmpfiles.rules = lib.optional (!managedStateDir) "d ${cfg.stateDir} 0700 root root -";

    systemd.services.nixfleet-agent = {
      description = "nixfleet host agent";
      wantedBy = [ "multi-user.target" ];
      after = [
        "network-online.target"
        "nix-daemon.service"
      ];
      wants = [ "network-online.target" ];
      # nix-store, nix-env (realise, profile), systemd-run and systemctl (the switch).
      path = [
        config.nix.package
        pkgs.systemd
      ];
      environment = {
        # Nix's evaluation cache outside the state directory and persistent (the reference
        # module's location).
        XDG_CACHE_HOME = "/var/lib/nixfleet/.cache";
      }
      # The sandboxed agent cannot write the store: nix-daemon realises and roots for it.
      // lib.optionalAttrs hardened { NIX_REMOTE = "daemon"; }
      // lib.optionalAttrs (cfg.tags != [ ]) { NIXFLEET_TAGS = lib.concatStringsSep "," cfg.tags; }
      // cfg.environment;

      # An activation that changes this unit (a new agent package, flag, environment or
      # CA) restarts the agent, as the reference module does, so that the new one runs
      # seconds after it, not at the next reboot. That is safe with the systemd-run switch:
      # the switch runs in its own transient unit, so stopping the agent that fired it
      # leaves it running (and the switch waits for the restart to finish); the old agent
      # drains, its events being in the outbox on disk; the new one rehydrates the rollout
      # from the control plane and continues it where it stands, without firing the switch
      # again. With `direct` the switch is a child in the agent's cgroup, which a restart
      # would kill mid-activation: there the agent keeps running until its next restart.
      restartIfChanged = cfg.switchMethod == "systemd-run";
      # Restarted after the activation script, not stopped before it and started after:
      # the old agent keeps watching the switch through the activation.
      stopIfChanged = false;
      # trust.json and health-checks.json are no triggers: the agent re-reads the first on
      # every verification and the second on every probe reset.
      restartTriggers = lib.optional (caEtc != null) caEtc.source;

      # Never give up restarting.
      startLimitIntervalSec = 0;

      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = agentArgs.execStart "${cfg.package}/bin/nixfleet-agent" settings;
        Restart = "always";
        RestartSec = 30;
        # Above the agent's 25 s drain deadline.
        TimeoutStopSec = 60;
        # /var/lib/nixfleet: the client certificate and XDG_CACHE_HOME.
        StateDirectory = [ "nixfleet" ] ++ lib.optional managedStateDir stateDirectory;
        StateDirectoryMode = "0700";
        # With `direct` this is all: the switch (`nixos-rebuild switch` as a daemon) runs
        # inside the agent's unit, and any confinement would break it, not contain it. With
        # `systemd-run`, `hardening` above.
        NoNewPrivileges = true;
      }
      // lib.optionalAttrs hardened hardening
      // lib.optionalAttrs (cfg.watchdogSec != null) { WatchdogSec = cfg.watchdogSec; };
    };
  };
}
