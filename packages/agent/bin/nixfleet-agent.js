#!/usr/bin/env node
// The compiled entry point; `npm install` builds it (the root `prepare` script).
import "../dist/bin.js"
