/**
 * The tag of the long fault matrices (StorageFaults, CrashMatrixNix): minutes of waiting
 * for the agent's retries and the control plane's heartbeats, so a plain `npm test` skips
 * them with one line; `.ci/run` sets it and runs them.
 */
export const FAULT_MATRIX = "NIXFLEET_TEST_FAULT_MATRIX"

export const faultMatrixEnabled = (): boolean => process.env[FAULT_MATRIX] !== undefined

export const faultMatrixSkipped = (name: string): string =>
  `${name} [skipped: set ${FAULT_MATRIX}=1 to run it, as .ci/run does]`
