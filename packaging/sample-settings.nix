# The sample configuration packaging/nixfleet-agent.service is the unit of (every other
# option at its default, the host named web-01):
{
  controlPlaneUrl = "https://cp.example.org:8443";
  machineId = "web-01";
  renewalThresholdFraction = 0.5;
  tls.caCert = "/etc/nixfleet/agent/cp-ca.pem";
  bootstrapTokenFile = "/run/secrets/nixfleet-bootstrap-token";
  tags = [
    "web"
    "eu-west"
  ];
  metrics.listen = "9464";
}
