#!/usr/bin/env -S MALLOC_MMAP_THRESHOLD_=131072 node --max-semi-space-size=1 --gc-memory-reducer-start-delay-ms=1000
// The bundled command line (dist/bundle, built by the root `build` script, which `npm
// install` runs as `prepare`).
//
// The shebang keeps the daemon lean when idle, at a cost (`npm run bench -- node-flags`,
// one run on 2 cores: idle RSS after converging 74 MiB instead of 107; boot 469 ms instead
// of 381, DispatchAck 54 ms instead of 46, outbox enqueue about 10 % and the pure state
// machine about 7 % slower; a 2 MiB semi-space measured no better); the flake's wrapper
// (nix/package.nix) passes the same:
// - a young generation of 1 MiB per semi-space instead of up to 16 MiB, which it keeps;
// - V8's memory reducer (a compacting collection once allocation has calmed down) 1 s after
//   a full collection rather than 8 s;
// - glibc's mmap threshold fixed at its default, so that large blocks freed after start-up
//   go back to the system instead of staying in the heap (no effect elsewhere).
//
// Stack traces are mapped to our TypeScript sources when they are formatted
// (src/node/stackTraces.ts), installed once the bundle has loaded: Effect formats a
// stack trace as it loads, which is not worth parsing a source map for.
import { URL } from "node:url"
import { mapStackTraces } from "../dist/bundle/stack-traces.mjs"

await import("../dist/bundle/nixfleet-agent.mjs")
mapStackTraces(new URL("../dist/bundle/", import.meta.url))
