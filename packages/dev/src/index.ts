/**
 * The dev tools' entry point: the demo that `nixfleet-agent dev` (and `npm start`) loads by
 * name from a checkout of the repository. The real-Nix fixtures the tests build are the
 * `@nixfleet/dev/NixFixtures` entry.
 */
export { type DemoOptions, DemoSetupFailed, runDemo } from "./Demo.js"
export { SandboxNotEmpty } from "./Sandbox.js"
