# The node flags and environment of the agent's bin script, read from its shebang
# (`#!/usr/bin/env -S NAME=value … node --flag …`): packages/agent/bin/nixfleet-agent.js is
# where they are set and explained. nix/package.nix's wrapper runs node on the script
# itself, so it passes the same; one place to change them.
{ lib }:
let
  shebang = lib.head (lib.splitString "\n" (builtins.readFile ../packages/agent/bin/nixfleet-agent.js));
  words = lib.filter (word: word != "") (
    lib.splitString " " (lib.removePrefix "#!/usr/bin/env -S " shebang)
  );
  node = lib.lists.findFirstIndex (word: word == "node") (throw "no `node` in the shebang: ${shebang}") words;
  assignment =
    word:
    let
      parts = lib.splitString "=" word;
    in
    {
      name = lib.head parts;
      value = lib.concatStringsSep "=" (lib.tail parts);
    };
in
{
  # Variables for node's environment, as an attribute set.
  env = lib.listToAttrs (map assignment (lib.take node words));
  # node's own flags, before the script.
  flags = lib.drop (node + 1) words;
}
