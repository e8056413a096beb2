// npm run lint: neostandard (the style of the Fastify family) with its
// TypeScript rules, over the sources, tests, benches and scripts.
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'coverage/**', 'test-artifacts/**', '.tap/**', 'bench/results/**'],
  }),
  {
    rules: {
      // `void promise` marks a promise that is deliberately not awaited
      // (its errors are handled inside): allowed as a statement only.
      'no-void': ['error', { allowAsStatement: true }],
    },
  },
]
