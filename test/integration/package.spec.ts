/**
 * The npm package as someone else's app installs it: `npm pack` (which builds
 * dist/ first) into a temporary folder, the tarball installed into a scratch
 * app under os.tmpdir(), the README's embedding examples type-checked there
 * against the installed declarations and run as JavaScript with Node's type
 * stripping off, and the installed `accord` command.
 */
import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { expect } from 'aegir/chai'
import { createPackageApp, readmeExample, run } from '../lib/package-app.ts'
import type { PackageApp } from '../lib/package-app.ts'

const root = fileURLToPath(new URL('../../', import.meta.url))

describe('npm package', function () {
  this.timeout(120_000)
  let app: PackageApp | undefined
  let version: string

  before(async function () {
    this.timeout(300_000)
    version = JSON.parse(await readFile(`${root}package.json`, 'utf8')).version
    app = await createPackageApp()
  })

  after(async () => {
    await app?.remove()
  })

  function installed (): PackageApp {
    if (app == null) { throw new Error('the package was not installed') }
    return app
  }

  it('holds the built JavaScript and declarations, the README and package.json, and nothing else', async () => {
    const { packageDir } = installed()
    // (node_modules/ is npm's, where it nests a dependency whose version conflicts)
    const top = (await readdir(packageDir)).filter(f => f !== 'node_modules' && !/^(LICENSE|LICENCE)/i.test(f)).sort()
    expect(top).to.deep.equal(['README.md', 'dist', 'package.json'])
    expect((await readdir(`${packageDir}/dist`)).sort()).to.deep.equal(['identity', 'node', 'protocols'])
    const files = await readdir(`${packageDir}/dist`, { recursive: true })
    expect(files.filter(f => f.endsWith('.ts') && !f.endsWith('.d.ts'))).to.deep.equal([])
    expect(files).to.include.members(['node/index.js', 'node/index.d.ts', 'node/index.js.map', 'node/cli.js'])
  })

  it('installs the accord command', async () => {
    const { bin, dir, env } = installed()
    const { stdout } = await run(bin, ['--help'], { cwd: dir, env })
    expect(stdout).to.match(new RegExp(`^accord ${version.replaceAll('.', '\\.')}: a peer-to-peer consensus toolkit on libp2p\n`))
    expect(stdout).to.include('Usage: accord <command> [flags]')
  })

  it('its declarations type-check strictly, with skipLibCheck off', async () => {
    const source = "import * as accord from 'accord-p2p'\nconsole.log([typeof accord.createAccordNode, typeof accord.raft, typeof accord.clusterAdmission].join())\n"
    const { stdout } = await installed().compileAndRun('declarations', source, { skipLibCheck: false })
    expect(stdout).to.equal('function,function,function\n')
  })

  it('runs the README example "embed" as JavaScript, type-checked against the installed declarations', async () => {
    const { stdout } = await installed().compileAndRun('embed', await readmeExample('embed'))
    expect(stdout).to.match(/^12D3KooW\w+ sees 1 member\(s\) over \/noise\n$/)
  })

  it('runs the README example "embed-services" as JavaScript, type-checked against the installed declarations', async () => {
    const { stdout } = await installed().compileAndRun('embed-services', await readmeExample('embed-services'))
    expect(stdout).to.match(/^wrote on 12D3KooW\w+, read on 12D3KooW\w+ linearizably: hello\n$/)
  })
})
