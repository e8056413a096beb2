// Part of `npm run build`: copies the demo page's files that tsc does not
// emit (HTML, CSS) from src/demo/ to dist/src/demo/, next to its compiled
// modules, so that dist/ alone (the Docker image) serves the whole demo.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs'

const FROM = new URL('../src/demo/', import.meta.url)
const TO = new URL('../dist/src/demo/', import.meta.url)

mkdirSync(TO, { recursive: true })
for (const name of readdirSync(FROM)) {
  if (/\.(html|css)$/.test(name)) copyFileSync(new URL(name, FROM), new URL(name, TO))
}
