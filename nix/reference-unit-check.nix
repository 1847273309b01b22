# true, or an evaluation error saying what drifted: the reference unit's ExecStart is what
# agent-args.nix renders for the sample settings, and agent-args.nix refuses a flag given
# twice. Builtins only (`nix-instantiate --eval nix/reference-unit-check.nix`, and the
# flake's checks).
let
  inherit (builtins)
    filter
    isString
    match
    readFile
    split
    tryEval
    ;
  agentArgs = import ./agent-args.nix;
  sample = import ../packaging/sample-settings.nix;
  lines = filter isString (split "\n" (readFile ../packaging/nixfleet-agent.service));
  execStart = filter (line: match "ExecStart=.*" line != null) lines;
  expected = "ExecStart=${agentArgs.execStart sample.program sample.settings}";
  twice = tryEval (
    builtins.deepSeq (agentArgs.args (
      sample.settings
      // {
        extraArgs = [
          "--state-dir"
          "/elsewhere"
        ];
      }
    )) true
  );
in
if execStart != [ expected ] then
  throw "packaging/nixfleet-agent.service: ExecStart is not what nix/agent-args.nix renders for packaging/sample-settings.nix; expected:\n${expected}"
else if twice.success then
  throw "nix/agent-args.nix passed --state-dir twice"
else
  true
