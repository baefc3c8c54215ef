import { execFile } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect } from 'aegir/chai'

const exec = promisify(execFile)
const root = fileURLToPath(new URL('../../', import.meta.url))
const exampleFile = `${root}test/fixtures/.readme-example.ts`
const tsconfigFile = `${root}test/fixtures/.readme-example.tsconfig.json`

/** The TypeScript block that follows `marker` in the README. */
async function readmeBlock (marker: string): Promise<string> {
  const readme = await readFile(`${root}README.md`, 'utf8')
  const start = readme.indexOf(marker)
  if (start < 0) { throw new Error(`README has no ${marker}`) }
  const match = /```ts\n([\s\S]*?)```/.exec(readme.slice(start))
  if (match == null) { throw new Error(`no ts block after ${marker}`) }
  return match[1]
}

describe('README library example', function () {
  this.timeout(120_000)

  after(async () => {
    await rm(exampleFile, { force: true })
    await rm(tsconfigFile, { force: true })
  })

  it('compiles against the package exports and runs', async () => {
    await mkdir(`${root}test/fixtures`, { recursive: true })
    await writeFile(exampleFile, await readmeBlock('<!-- example: embed -->'))
    await writeFile(tsconfigFile, JSON.stringify({
      extends: '../../tsconfig.json',
      compilerOptions: { noEmit: true, composite: false, incremental: false },
      include: ['.readme-example.ts']
    }))
    // strict type check, exactly as a user's project would compile it
    await exec(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', tsconfigFile], { cwd: root })
    const { stdout } = await exec(process.execPath, [exampleFile], { cwd: root, env: { ...process.env, NODE_OPTIONS: '' } })
    expect(stdout).to.match(/^12D3KooW\w+ sees 1 member\(s\) over \/noise\n$/)
  })
})
