/**
 * The Nix expression the stand-in system closures are built from (`NixClosures`). It is a
 * string, written into the sandbox at run time, because the compiled package ships no
 * `.nix` file.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export const CLOSURE_EXPRESSION = `# A stand-in for a NixOS system closure, built by \`buildClosure\` (NixClosures.ts).
#
# \`spec\` is JSON (so no value ever needs Nix string escaping):
#   { name, salt, switchScript,
#     components: { dbus | systemd | kernel: { name, label } } }
#
# Layout of the result (what the activation pipeline looks at):
#   bin/switch-to-configuration        "#!/bin/sh", \`self=$out\`, then \`switchScript\`
#   etc/systemd/system/dbus.service -> <dbus component>/etc/systemd/system/dbus.service
#   sw/lib/systemd/systemd          -> <systemd component>/lib/systemd/systemd
#   kernel                          -> <kernel component>/bzImage
#   nixos-version
#
# A component's store path depends only on its kind and label, so closures with the same
# label share it and closures with different labels do not.
#
# There is no nixpkgs: builders are /bin/sh with absolute host tools (the build sandbox is
# off, and PATH is not set in the build environment).
{ spec }:
let
  s = builtins.fromJSON spec;

  mk = name: script: attrs:
    derivation ({
      inherit name;
      system = builtins.currentSystem;
      builder = "/bin/sh";
      args = [ "-c" script ];
    } // attrs);

  component = c: script: mk c.name script { inherit (c) label; };

  dbus = component s.components.dbus ''
    set -e
    /bin/mkdir -p "$out/etc/systemd/system"
    printf '[Unit]\\nDescription=D-Bus System Message Bus (nixfleet fixture, version %s)\\n' "$label" \\
      > "$out/etc/systemd/system/dbus.service"
  '';

  systemd = component s.components.systemd ''
    set -e
    /bin/mkdir -p "$out/lib/systemd"
    printf '#!/bin/sh\\necho "systemd (nixfleet fixture) %s"\\n' "$label" > "$out/lib/systemd/systemd"
    /bin/chmod 0555 "$out/lib/systemd/systemd"
  '';

  kernel = component s.components.kernel ''
    set -e
    /bin/mkdir -p "$out"
    printf 'nixfleet fixture kernel, version %s\\n' "$label" > "$out/bzImage"
  '';
in
mk s.name ''
  set -e
  /bin/mkdir -p "$out/bin" "$out/etc/systemd/system" "$out/sw/lib/systemd"
  /bin/ln -s "$dbus/etc/systemd/system/dbus.service" "$out/etc/systemd/system/dbus.service"
  /bin/ln -s "$systemd/lib/systemd/systemd" "$out/sw/lib/systemd/systemd"
  /bin/ln -s "$kernel/bzImage" "$out/kernel"
  printf '%s\\n' "$name" > "$out/nixos-version"
  { printf '#!/bin/sh\\nself=%s\\n' "$out"; printf '%s\\n' "$switchScript"; } > "$out/bin/switch-to-configuration"
  /bin/chmod 0555 "$out/bin/switch-to-configuration"
'' {
  inherit dbus systemd kernel;
  inherit (s) switchScript salt;
}
`
