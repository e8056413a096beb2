// Rewrites the settings table in README.md from the config schema.
import { readFileSync, writeFileSync } from 'node:fs'
import { settingsTable } from '../dist/src/core/config.js'

const START = '<!-- settings-table:start -->'
const END = '<!-- settings-table:end -->'
const readme = readFileSync('README.md', 'utf8')
const a = readme.indexOf(START)
const b = readme.indexOf(END)
if (a === -1 || b === -1) throw new Error('README.md lacks the settings-table markers')
writeFileSync('README.md', readme.slice(0, a + START.length) + '\n' + settingsTable() + '\n' + readme.slice(b))
console.log('README.md settings table updated')
