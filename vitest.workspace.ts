/**
 * One vitest project per package (each package's own `vitest.config.ts`). The root
 * `vitest.config.ts` reads this list, so vitest 3.2 does not warn about workspace files.
 */
export default ["packages/*"]
