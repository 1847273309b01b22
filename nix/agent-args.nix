# The `nixfleet-agent run` command line, rendered from the module's settings.
#
# Pure and builtins-only (no nixpkgs `lib`): the modules import it, and the tests evaluate it
# alone with a bare `nix-instantiate --eval`.
#
# Settings use the option names of services.nixfleet-agent (tls is an attribute set).
# An absent or null setting passes no flag: the agent's own default applies.
let
  inherit (builtins)
    attrNames
    concatMap
    concatStringsSep
    filter
    foldl'
    head
    isFloat
    isInt
    isPath
    isString
    match
    replaceStrings
    toJSON
    typeOf
    ;

  # The module's defaults. The options file uses them, and so does the reference unit's
  # sample configuration; where a flag has an agent default, it is the same value.
  defaults = {
    trustFile = "/etc/nixfleet/agent/trust.json";
    healthChecksFile = "/etc/nixfleet/agent/health-checks.json";
    manifestFreshnessWindowSecs = 3600;
    renewalThresholdFraction = null;
    tls = {
      caCert = null;
      # Written by enrollment and renewal: must be writable and persistent (the bootstrap
      # token is one-shot, so a lost certificate cannot be enrolled again).
      clientCert = "/var/lib/nixfleet/agent-cert.pem";
      # The control plane refuses a CSR whose key is not the host's declared SSH key.
      clientKey = "/etc/ssh/ssh_host_ed25519_key";
    };
    bootstrapTokenFile = null;
    stateDir = "/var/lib/nixfleet-agent";
    sshHostKeyFile = "/etc/ssh/ssh_host_ed25519_key";
    sustainedFailureSecs = 120;
    verifyTimeoutSecs = 300;
    realiseTimeoutSecs = 3600;
    logFormat = "json";
  };

  render =
    value:
    if isString value then
      value
    else if isInt value then
      toString value
    # toJSON writes 0.5, where toString would write 0.500000.
    else if isFloat value then
      toJSON value
    # A path literal (trustFile): copied into the store, so the host has it.
    else if isPath value then
      "${value}"
    else
      throw "nixfleet-agent: cannot pass a ${typeOf value} as a flag value";

  required =
    settings: name:
    let
      value = settings.${name} or null;
    in
    if value == null then throw "nixfleet-agent: ${name} must be set" else value;

  # The flag a word names, if it is one (`--name` or `--name=value`).
  flagName =
    word:
    let
      m = match "--([^=]+)(=.*)?" word;
    in
    if m == null then null else head m;

  duplicates =
    names:
    let
      counts = foldl' (acc: name: acc // { ${name} = (acc.${name} or 0) + 1; }) { } names;
    in
    filter (name: counts.${name} > 1) (attrNames counts);

  # argv after the program: the `run` subcommand, named (the agent also takes run's flags
  # without it, as the reference binary does, but a unit should not depend on that), then
  # the flags in the reference module's order, the port's own flags, and extraArgs. A flag
  # given twice is refused here (the agent refuses it too, at start).
  args =
    settings:
    let
      tls = settings.tls or { };
      get = name: settings.${name} or null;
      flags = filter (f: f.value != null) [
        { name = "control-plane-url"; value = required settings "controlPlaneUrl"; }
        { name = "machine-id"; value = required settings "machineId"; }
        { name = "poll-interval"; value = get "pollInterval"; }
        { name = "trust-file"; value = get "trustFile"; }
        { name = "manifest-freshness-window-secs"; value = get "manifestFreshnessWindowSecs"; }
        { name = "renewal-threshold-fraction"; value = get "renewalThresholdFraction"; }
        { name = "ca-cert"; value = tls.caCert or null; }
        { name = "client-cert"; value = tls.clientCert or null; }
        { name = "client-key"; value = tls.clientKey or null; }
        { name = "bootstrap-token-file"; value = get "bootstrapTokenFile"; }
        { name = "state-dir"; value = get "stateDir"; }
        { name = "compliance-gate-mode"; value = (settings.complianceGate or { }).mode or null; }
        { name = "ssh-host-key-file"; value = get "sshHostKeyFile"; }
        { name = "health-checks-file"; value = get "healthChecksFile"; }
        { name = "sustained-failure-secs"; value = get "sustainedFailureSecs"; }
        { name = "verify-timeout-secs"; value = get "verifyTimeoutSecs"; }
        { name = "realise-timeout-secs"; value = get "realiseTimeoutSecs"; }
        { name = "switch-method"; value = get "switchMethod"; }
        { name = "log-format"; value = get "logFormat"; }
        { name = "metrics-listen"; value = (settings.metrics or { }).listen or null; }
        { name = "metrics-textfile"; value = (settings.metrics or { }).textfile or null; }
      ];
      extra = settings.extraArgs or [ ];
      # Values are never read as flags: only the rendered names and extraArgs' flag words count.
      twice = duplicates (map (f: f.name) flags ++ filter (name: name != null) (map flagName extra));
    in
    if twice == [ ] then
      [ "run" ] ++ concatMap (f: [ "--${f.name}" (render f.value) ]) flags ++ extra
    else
      throw "nixfleet-agent: flag given twice (check extraArgs): --${concatStringsSep ", --" twice}";

  # One word of a systemd Exec* line. systemd's syntax is not a shell's: `'\''` is
  # "unbalanced quoting" there, `%` starts a specifier and `$` an environment expansion.
  # Words made only of safe characters stay bare (readable units); any other becomes a
  # double-quoted C string (JSON's escapes are a subset) with `%` and `$` doubled, as
  # nixpkgs' utils.escapeSystemdExecArg does.
  systemdWord =
    word:
    if match "[A-Za-z0-9_./:@+=,-]+" word != null then
      word
    else
      replaceStrings [ "%" "$" ] [ "%%" "$$" ] (toJSON word);

  # The value of ExecStart=.
  execStart = program: settings: concatStringsSep " " (map systemdWord ([ program ] ++ args settings));
in
{
  inherit
    defaults
    args
    execStart
    systemdWord
    ;
}
