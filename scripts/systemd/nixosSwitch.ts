/**
 * What NixOS's `switch-to-configuration switch` does to one service whose unit file the new
 * system changes, as commands for a stand-in closure's switch (`FlipThenRun`, run once the
 * current-system link points at the new closure, which is where the real switch's
 * activation script leaves it): the new unit file replaces the running one (in
 * /run/systemd/system, where the box's units live), systemd reloads, and the unit is
 * handled as the real switch handles a changed service by the new unit's `X-` lines:
 * `X-RestartIfChanged=false` leaves it running as it is, `X-StopIfChanged=false` restarts
 * it, anything else stops and starts it (the real switch stops it before the activation
 * script; here that comes after the flip). Every `systemctl` waits for its job, as the real
 * switch waits for its jobs, so the switch ends only once the unit is up again.
 */

const SCRIPT = [
  "unit=/run/systemd/system/$1",
  "[ \"$(/bin/cat \"$unit\" 2>/dev/null)\" = \"$(printf '%s' \"$2\")\" ] && exit 0",
  "printf '%s' \"$2\" > \"$unit.new\" && /bin/mv \"$unit.new\" \"$unit\" || exit 72",
  "/usr/bin/systemctl daemon-reload || exit $?",
  "case \"$2\" in",
  "  *'\nX-RestartIfChanged=false\n'*) echo \"NOT restarting $1: X-RestartIfChanged=false\" >&2 ;;",
  "  *'\nX-StopIfChanged=false\n'*) /usr/bin/systemctl restart \"$1\" ;;",
  "  *) /usr/bin/systemctl stop \"$1\" && /usr/bin/systemctl start \"$1\" ;;",
  "esac"
].join("\n")

/**
 * The switch's commands that install `unitText` as the unit `name` (e.g.
 * `nixfleet-agent.service`) and handle the change as NixOS does, then record the time the
 * switch got past them (nanoseconds since the epoch) in `doneFile`.
 */
export const changeUnitCommands = (
  name: string,
  unitText: string,
  doneFile: string
): ReadonlyArray<ReadonlyArray<string>> => [
  ["/bin/sh", "-c", SCRIPT, "switch-to-configuration", name, unitText],
  ["/bin/sh", "-c", "/bin/date +%s%N > \"$1\"", "switch-to-configuration", doneFile]
]
