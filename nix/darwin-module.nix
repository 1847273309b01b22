# services.nixfleet-agent on nix-darwin: the agent as the launchd daemon com.nixfleet.agent.
{ agentPackage }:
{
  config,
  lib,
  ...
}:

let
  cfg = config.services.nixfleet-agent;
  agentArgs = import ./agent-args.nix;

  settings = cfg // {
    inherit (agentArgs.defaults) healthChecksFile;
  };

  # The package's store path, so that an upgraded agent changes the plist: nix-darwin
  # reloads a daemon whose plist changed while it activates, and the new agent runs at the
  # end of the activation that brought it, as restartIfChanged does on NixOS. The switch
  # the old agent fired survives that (it runs detached, in its own session), and the new
  # agent rehydrates the rollout from the control plane and picks it up where it stands.
  program = "${cfg.package}/bin/nixfleet-agent";

  # The client certificate and XDG_CACHE_HOME live here; it is also the working directory
  # (launchd fails a job whose working directory is missing).
  home = "/var/lib/nixfleet";
in
{
  _file = ./darwin-module.nix;

  imports = [
    (import ./module-options.nix {
      inherit agentPackage;
      switchMethods = [
        "darwin"
        "direct"
      ];
      defaultSwitchMethod = "darwin";
    })
  ];

  config = lib.mkIf cfg.enable {
    system.activationScripts.preActivation.text = ''
      mkdir -p ${lib.escapeShellArg home} ${lib.escapeShellArg cfg.stateDir}
      chmod 0700 ${lib.escapeShellArg home} ${lib.escapeShellArg cfg.stateDir}
    '';

    # No `launchctl kickstart -k` after activation (the reference module had one): it
    # restarted the agent on every activation, including the ones the agent fired.
    launchd.daemons.nixfleet-agent.serviceConfig = {
      Label = "com.nixfleet.agent";
      # An argv, no shell: nothing to quote. No start delay (the reference slept 15 s): a
      # start before /nix, /run/current-system or the trust file are there fails, and
      # launchd starts it again ThrottleInterval seconds later; the agent itself retries
      # an unreachable control plane.
      ProgramArguments = [ program ] ++ agentArgs.args settings;
      KeepAlive = true;
      RunAtLoad = true;
      ThrottleInterval = 10;
      # Above the agent's 25 s drain deadline (launchd's default is 20 s).
      ExitTimeOut = 30;
      StandardOutPath = "/var/log/nixfleet-agent.log";
      StandardErrorPath = "/var/log/nixfleet-agent.log";
      WorkingDirectory = home;
      EnvironmentVariables = {
        # launchd's default PATH has no Nix.
        PATH = "/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin:/usr/bin:/bin";
        XDG_CACHE_HOME = "${home}/.cache";
      }
      // lib.optionalAttrs (cfg.tags != [ ]) { NIXFLEET_TAGS = lib.concatStringsSep "," cfg.tags; }
      // cfg.environment;
    };
  };
}
