/**
 * The property-testing kit: arbitraries of events, records and whole rollouts, and a
 * replay of a rollout through `step`. A separate entry (`@nixfleet/state-machine/testing`)
 * so that the reducer's main entry never loads fast-check.
 *
 * @since 0.1.0
 */
export * from "./Arbitraries.js"
