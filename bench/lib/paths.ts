/** Where things are, from the compiled file's location (dist/bench/lib/). */
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const GATEWAY_ENTRY = fileURLToPath(new URL('../../src/main.js', import.meta.url))
export const CEILING_ENTRY = fileURLToPath(new URL('../ceiling-server.js', import.meta.url))
export const WORKER_ENTRY = fileURLToPath(new URL('./loadgen-worker.js', import.meta.url))
export const RESULTS_DIR = fileURLToPath(new URL('../../../bench/results/', import.meta.url))
export const MEMORY_PROBE = fileURLToPath(new URL('../../../test/helpers/memory-probe.mjs', import.meta.url))
