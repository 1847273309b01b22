import * as effectEslint from "@effect/eslint-plugin"
import js from "@eslint/js"
import tseslint from "typescript-eslint"
import { layersPlugin } from "./scripts/eslint/layers.mjs"

export default tseslint.config(
  { ignores: ["**/dist/**", "**/build/**", "**/node_modules/**", "**/*.md"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...effectEslint.configs.dprint,
  {
    languageOptions: {
      parserOptions: { ecmaVersion: 2022, sourceType: "module" }
    },
    rules: {
      "no-console": "error",
      "no-restricted-imports": ["error", {
        paths: [{ name: "@effect/schema", message: "Import Schema from \"effect\"." }]
      }],
      "@typescript-eslint/no-explicit-any": "error",
      // `{}` is how Effect spells an empty variant of a tagged enum.
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/array-type": ["error", { default: "generic", readonly: "generic" }],
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }]
    }
  },
  {
    // The agent's folders import one way only (scripts/eslint/layers.mjs).
    files: ["packages/agent/src/**/*.ts"],
    plugins: { layers: layersPlugin },
    rules: { "layers/import-direction": "error" }
  },
  {
    // The state machine is the pure core: no I/O, no clocks, no timers.
    files: ["packages/state-machine/src/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", {
        patterns: [{
          group: ["node:*", "fs", "path", "http", "https", "net", "child_process", "@effect/platform*"],
          message: "The state machine is pure."
        }],
        paths: [
          { name: "effect/Clock", message: "The state machine never reads a clock." },
          { name: "effect/Effect", message: "The state machine is a pure function." }
        ]
      }],
      "no-restricted-properties": ["error", {
        object: "Date",
        property: "now",
        message: "The state machine never reads a clock."
      }],
      "no-restricted-syntax": ["error", {
        selector: "NewExpression[callee.name='Date'][arguments.length=0]",
        message: "The state machine never reads a clock."
      }],
      "no-restricted-globals": ["error", "setTimeout", "setInterval", "performance", "process"]
    }
  },
  {
    files: ["scripts/**/*.ts"],
    rules: { "no-console": "off" }
  }
)
