# The sample configuration packaging/nixfleet-agent.service is rendered for:
#
#   services.nixfleet-agent = {
#     enable = true;
#     controlPlaneUrl = "https://cp.example.org:8443";
#     machineId = "web-01";
#     renewalThresholdFraction = 0.5;
#     tls.caCert = "/etc/nixfleet/agent/cp-ca.pem";
#     bootstrapTokenFile = "/run/secrets/nixfleet-bootstrap-token";
#     tags = [ "web" "eu-west" ];
#     metrics.listen = "9464";
#   };
#
# as nix/nixos-module.nix passes it to nix/agent-args.nix: every other option at its default.
let
  inherit (import ../nix/agent-args.nix) defaults;
in
{
  program = "/nix/store/00000000000000000000000000000000-nixfleet-agent-0.1.0/bin/nixfleet-agent";
  settings = defaults // {
    controlPlaneUrl = "https://cp.example.org:8443";
    machineId = "web-01";
    renewalThresholdFraction = 0.5;
    tls = defaults.tls // {
      caCert = "/etc/nixfleet/agent/cp-ca.pem";
    };
    bootstrapTokenFile = "/run/secrets/nixfleet-bootstrap-token";
    tags = [
      "web"
      "eu-west"
    ];
    switchMethod = "systemd-run";
    metrics.listen = "9464";
  };
}
