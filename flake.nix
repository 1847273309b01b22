{
  description = "nixfleet-agent: the nixfleet host agent (TypeScript/Effect port of the v0.2 agent)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      agentPackage = pkgs: self.packages.${pkgs.stdenv.hostPlatform.system}.default;
    in
    {
      packages = forAllSystems (pkgs: rec {
        nixfleet-agent = pkgs.callPackage ./nix/package.nix { };
        default = nixfleet-agent;
      });

      nixosModules.default = import ./nix/nixos-module.nix { inherit agentPackage; };
      darwinModules.default = import ./nix/darwin-module.nix { inherit agentPackage; };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.nodejs_20
            pkgs.python3
            pkgs.nix
          ]
          # node-gyp (better-sqlite3, unix-dgram): stdenv's compiler, plus libtool and
          # xcrun on darwin.
          ++ lib.optionals pkgs.stdenv.hostPlatform.isDarwin [
            pkgs.cctools
            pkgs.xcbuild
          ];
        };
      });

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        # Pure evaluation: packaging/nixfleet-agent.service is the unit the NixOS module,
        # evaluated by the module system, renders for packaging/sample-settings.nix.
        reference-unit =
          assert import ./nix/reference-unit-check.nix { inherit lib; };
          pkgs.runCommand "nixfleet-agent-reference-unit" { } "touch $out";
      });
    };
}
