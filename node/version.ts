import { createRequire } from 'node:module'

// package.json is one folder up from the sources (node/version.ts), two
// from the built package (dist/node/version.js)
const PACKAGE_JSON = import.meta.url.endsWith('.ts') ? '../package.json' : '../../package.json'

export const VERSION: string = createRequire(import.meta.url)(PACKAGE_JSON).version
