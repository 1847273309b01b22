# true, or an evaluation error saying what drifted: packaging/nixfleet-agent.service is the
# unit nix/reference-unit.nix renders from the evaluated NixOS module. The flake's checks
# evaluate it with nixpkgs' lib, the tests with the vendored one.
{ lib }:
let
  expected = import ./reference-unit.nix { inherit lib; };
  actual = builtins.readFile ../packaging/nixfleet-agent.service;
in
if actual == expected then
  true
else
  throw "packaging/nixfleet-agent.service is not the unit nix/nixos-module.nix renders for packaging/sample-settings.nix; regenerate it (see nix/reference-unit.nix). Expected:\n${expected}"
