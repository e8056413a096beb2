/**
 * The `retry:` a client is told, jittered: a replica that ends or refuses
 * many streams at once (drain, capacity, Redis down) must not have them all
 * come back in the same millisecond. Pure; the one place this is computed.
 */

/**
 * A reconnect delay from `baseMs` to `baseMs + jitterMs` (both ms, whole,
 * inclusive), uniformly. `random` is for tests.
 */
export function jitteredRetryMs (baseMs: number, jitterMs: number, random: () => number = Math.random): number {
  return baseMs + Math.floor(random() * (Math.max(0, jitterMs) + 1))
}
