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
      // lib.optionalAttrs (cfg.tags != [ ]) { NIXFLEET_TAGS = lib.concatStringsSep "," cfg.tags; }
      // cfg.environment;

      # A switch must never stop the agent that fired it: the agent watches the switch,
      # then reports and soaks it. An upgraded agent or a changed configuration takes
      # effect at the next restart of the service (or reboot), not during the switch.
      restartIfChanged = false;
      # No restartTriggers either: the agent re-reads trust.json on every verification and
      # health-checks.json on every probe reset. (With restartIfChanged = false a trigger
      # would not restart it anyway.)

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
        # Runs as root with no sandboxing beyond this: it realises closures, sets the
        # system profile and runs switch-to-configuration, which is `nixos-rebuild switch`
        # as a daemon. Any confinement would break the switch, not contain it.
        NoNewPrivileges = true;
      }
      // lib.optionalAttrs (cfg.watchdogSec != null) { WatchdogSec = cfg.watchdogSec; };
    };
  };
}
