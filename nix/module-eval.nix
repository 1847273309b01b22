# services.nixfleet-agent evaluated by nixpkgs' own module system (`lib.evalModules`), without
# nixpkgs: the NixOS or nix-darwin module, on stand-ins for the few options of the host's
# system it writes (typed as NixOS and nix-darwin type them, as far as this module uses them)
# and a `pkgs` that has only the attributes it reads. A wrong type, a missing value or a
# failed assertion is the module system's own error.
#
# The result is what the host would get: for NixOS the service and its unit file rendered in
# NixOS's layout, the tmpfiles rules, the /etc files and the system packages; for nix-darwin
# the launchd daemon and the activation script. The tests evaluate it with the vendored lib,
# packaging/nixfleet-agent.service is its unit for packaging/sample-settings.nix, and the
# systemd tests run the unit it renders.
#
#   lib        nixpkgs' lib
#   platform   "nixos" or "darwin"
#   settings   services.nixfleet-agent (`enable` defaults to true here)
#   hostName   networking.hostName (null: unset, nix-darwin's default)
#   paths      outPath of a stand-in package by name (default: a placeholder store path)
#   globalEnvironment  NixOS's systemd.globalEnvironment (default: its locale and zoneinfo)
#   extraModules  more modules of the host (e.g. the reference framework's options and what
#              its mkHost sets: packages/agent/test/fixtures/upstream-host.nix)
{
  lib,
  platform,
  settings,
  hostName ? "web-01",
  paths ? { },
  globalEnvironment ? null,
  extraModules ? [ ],
}:

let
  inherit (lib) mkOption types;

  # A package as the module system sees one (`types.package` takes a derivation).
  stub = name: {
    type = "derivation";
    inherit name;
    outPath = paths.${name} or "/nix/store/00000000000000000000000000000000-${name}";
  };

  agentPackage = _pkgs: stub "nixfleet-agent-0.1.0";

  # nixpkgs' pkgs.formats.json type: any JSON value.
  jsonValue = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
      types.path
      (types.attrsOf jsonValue)
      (types.listOf jsonValue)
    ]
  );

  pkgs = {
    formats.json = _: { type = jsonValue; };
    systemd = stub "systemd";
    coreutils = stub "coreutils";
    findutils = stub "findutils";
    gnugrep = stub "gnugrep";
    gnused = stub "gnused";
    glibcLocales = stub "glibc-locales";
    tzdata = stub "tzdata";
  };

  # Options both platforms have.
  common = hostNameType: {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      networking.hostName = mkOption { type = hostNameType; };
      nix.package = mkOption {
        type = types.package;
        default = stub "nix";
      };
      # As NixOS and nix-darwin: `text`, or the `source` file (from `text` when it is set;
      # here a placeholder store path named by the text's hash).
      environment.etc = mkOption {
        type = types.attrsOf (
          types.submodule (
            { name, config, ... }:
            {
              options.text = mkOption {
                type = types.nullOr types.lines;
                default = null;
              };
              options.source = mkOption { type = types.either types.path types.str; };
              config.source = lib.mkIf (config.text != null) (
                lib.mkDefault "/nix/store/${
                  builtins.substring 0 32 (builtins.hashString "sha256" config.text)
                }-${baseNameOf name}"
              );
            }
          )
        );
        default = { };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
    };
  };

  # systemd's unit options as NixOS types them: atoms or lists of atoms.
  unitAtom = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
  ];
  unitOption = types.either unitAtom (types.listOf unitAtom);

  nixos = {
    imports = [ (common types.str) ];
    options.systemd = {
      globalEnvironment = mkOption {
        type = types.attrsOf types.str;
        default = {
          LOCALE_ARCHIVE = "${pkgs.glibcLocales}/lib/locale/locale-archive";
          TZDIR = "${pkgs.tzdata}/share/zoneinfo";
        };
      };
      tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      services = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options = {
              description = mkOption {
                type = types.singleLineStr;
                default = "";
              };
              wantedBy = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              after = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              wants = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              path = mkOption {
                type = types.listOf (types.either types.package types.str);
                default = [ ];
              };
              environment = mkOption {
                type = types.attrsOf (
                  types.nullOr (
                    types.oneOf [
                      types.str
                      types.path
                      types.package
                    ]
                  )
                );
                default = { };
              };
              restartIfChanged = mkOption {
                type = types.bool;
                default = true;
              };
              stopIfChanged = mkOption {
                type = types.bool;
                default = true;
              };
              restartTriggers = mkOption {
                type = types.listOf types.unspecified;
                default = [ ];
              };
              startLimitIntervalSec = mkOption {
                type = types.nullOr types.int;
                default = null;
              };
              serviceConfig = mkOption {
                type = types.attrsOf unitOption;
                default = { };
              };
            };
          }
        );
      };
    };
    config.networking.hostName = lib.mkIf (hostName != null) hostName;
  };

  darwin = {
    imports = [ (common (types.nullOr types.str)) ];
    options = {
      system.activationScripts = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options.text = mkOption {
              type = types.lines;
              default = "";
            };
          }
        );
      };
      launchd.daemons = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options.serviceConfig = mkOption {
              default = { };
              type = types.submodule {
                options = {
                  Label = mkOption { type = types.str; };
                  ProgramArguments = mkOption {
                    type = types.nullOr (types.listOf types.str);
                    default = null;
                  };
                  KeepAlive = mkOption {
                    type = types.nullOr (types.either types.bool (types.attrsOf types.bool));
                    default = null;
                  };
                  RunAtLoad = mkOption {
                    type = types.nullOr types.bool;
                    default = null;
                  };
                  ThrottleInterval = mkOption {
                    type = types.nullOr types.int;
                    default = null;
                  };
                  ExitTimeOut = mkOption {
                    type = types.nullOr types.int;
                    default = null;
                  };
                  StandardOutPath = mkOption {
                    type = types.nullOr types.path;
                    default = null;
                  };
                  StandardErrorPath = mkOption {
                    type = types.nullOr types.path;
                    default = null;
                  };
                  WorkingDirectory = mkOption {
                    type = types.nullOr types.path;
                    default = null;
                  };
                  EnvironmentVariables = mkOption {
                    type = types.nullOr (types.attrsOf types.str);
                    default = null;
                  };
                };
              };
            };
          }
        );
      };
    };
    config.networking.hostName = hostName;
  };

  agentModule =
    if platform == "nixos" then
      import ./nixos-module.nix { inherit agentPackage; }
    else if platform == "darwin" then
      import ./darwin-module.nix { inherit agentPackage; }
    else
      throw "module-eval.nix: platform must be \"nixos\" or \"darwin\", got ${builtins.toJSON platform}";

  evaluated = lib.evalModules {
    modules = [
      (if platform == "nixos" then nixos else darwin)
      agentModule
      { services.nixfleet-agent.enable = lib.mkDefault true; }
    ]
    ++ extraModules
    ++ [
      { services.nixfleet-agent = settings; }
      (lib.optionalAttrs (platform == "nixos" && globalEnvironment != null) {
        systemd.globalEnvironment = lib.mkForce globalEnvironment;
      })
    ];
    specialArgs = { inherit pkgs; };
  };
  inherit (evaluated) config;

  # As NixOS and nix-darwin do when they build the system: every failed assertion at once.
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  checked =
    value:
    if failedAssertions == [ ] then
      value
    else
      throw "\nFailed assertions:\n${lib.concatMapStrings (message: "- ${message}\n") failedAssertions}";

  # NixOS's rendering of a systemd value (nixos/lib/systemd-lib.nix).
  toOption =
    value:
    if value == true then
      "true"
    else if value == false then
      "false"
    else
      toString value;

  # One `Key=value` line per value, keys sorted (NixOS's attrsToSection).
  section =
    attrs:
    lib.concatStrings (
      lib.concatLists (
        lib.mapAttrsToList (
          key: value: map (item: "${key}=${toOption item}\n") (lib.toList value)
        ) attrs
      )
    );

  # NixOS's X-Restart-Triggers value: a file of the triggers (`pkgs.writeText`), here a
  # placeholder store path named by their hash. Only its change matters to a switch.
  restartTriggersFile =
    triggers:
    let
      text = toString (map (x: if builtins.isPath x then "${x}" else x) (lib.flatten triggers));
    in
    "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" text)}-X-Restart-Triggers-nixfleet-agent";

  # The unit file NixOS writes for a service (the parts this module uses): [Unit] from the
  # dependency options and the restart triggers, [Service] with the environment (PATH from
  # `path`, plus NixOS's default tools), X-RestartIfChanged, X-StopIfChanged and
  # serviceConfig. wantedBy is a link NixOS makes, not a line.
  unitText =
    service:
    let
      path = service.path ++ [
        pkgs.coreutils
        pkgs.findutils
        pkgs.gnugrep
        pkgs.gnused
        pkgs.systemd
      ];
      environment =
        config.systemd.globalEnvironment
        // service.environment
        // {
          PATH = "${lib.makeBinPath path}:${lib.makeSearchPathOutput "bin" "sbin" path}";
        };
      unit =
        lib.optionalAttrs (service.description != "") { Description = service.description; }
        // lib.optionalAttrs (service.after != [ ]) { After = toString service.after; }
        // lib.optionalAttrs (service.wants != [ ]) { Wants = toString service.wants; }
        // lib.optionalAttrs (service.startLimitIntervalSec != null) {
          StartLimitIntervalSec = service.startLimitIntervalSec;
        }
        // lib.optionalAttrs (service.restartTriggers != [ ]) {
          X-Restart-Triggers = restartTriggersFile service.restartTriggers;
        };
    in
    "[Unit]\n"
    + section unit
    + "\n[Service]\n"
    + lib.concatMapStrings (
      name:
      lib.optionalString (
        environment.${name} != null
      ) "Environment=${builtins.toJSON "${name}=${toString environment.${name}}"}\n"
    ) (lib.attrNames environment)
    + lib.optionalString (!service.restartIfChanged) "X-RestartIfChanged=false\n"
    + lib.optionalString (!service.stopIfChanged) "X-StopIfChanged=false\n"
    + section service.serviceConfig;

  etc = lib.mapAttrs (_: file: file.text) config.environment.etc;
  systemPackages = map toString config.environment.systemPackages;
  # The reference framework's persisted directories, where the host declares them.
  persistence = lib.attrByPath [ "nixfleet" "persistence" "directories" ] null config;

  nixosResult =
    let
      service = config.systemd.services.nixfleet-agent or null;
    in
    {
      inherit etc systemPackages persistence;
      tmpfiles = config.systemd.tmpfiles.rules;
      service =
        if service == null then
          null
        else
          {
            inherit (service)
              description
              wantedBy
              after
              wants
              restartIfChanged
              stopIfChanged
              startLimitIntervalSec
              environment
              serviceConfig
              ;
            path = map toString service.path;
            restartTriggers = map toString service.restartTriggers;
          };
      unit = if service == null then null else unitText service;
    };

  darwinResult =
    let
      daemon = config.launchd.daemons.nixfleet-agent or null;
    in
    {
      inherit etc systemPackages persistence;
      daemon = if daemon == null then null else lib.filterAttrs (_: v: v != null) daemon.serviceConfig;
      preActivation = config.system.activationScripts.preActivation.text or null;
    };
in
checked (if platform == "nixos" then nixosResult else darwinResult)
