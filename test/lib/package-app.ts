/**
 * accord-p2p as a user's app gets it: the tarball that `npm pack` makes (its
 * prepack builds dist/), installed into a scratch app outside the repository
 * with the registry client a user has, and TypeScript compiled there against
 * the installed declarations and run as JavaScript.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const exec = promisify(execFile)
const root = fileURLToPath(new URL('../../', import.meta.url))
const OUTPUT_BYTES_MAX = 64 * 1024 * 1024
const NPM_TIMEOUT_MS = 150_000
const RUN_TIMEOUT_MS = 60_000

export interface RunResult {
  stdout: string
  stderr: string
}

export interface PackageApp {
  /** the scratch app's folder, under os.tmpdir() */
  dir: string
  /** the folder the package was installed into: node_modules/accord-p2p */
  packageDir: string
  /** the installed `accord` command: node_modules/.bin/accord */
  bin: string
  /** env for child processes: the repository's Node first, nothing from the repository's node_modules/.bin or the outer npm run */
  env: NodeJS.ProcessEnv
  /**
   * Type-check `source` as `<name>.ts` (strict, module nodenext) against the
   * installed package's declarations with the repository's tsc, emit it as
   * JavaScript, and run that with Node's type stripping off.
   */
  compileAndRun(name: string, source: string, options?: { skipLibCheck?: boolean }): Promise<RunResult>
  /** Remove the scratch app and the tarball. */
  remove(): Promise<void>
}

/**
 * Runs a command; a failure says which command, where, and everything it
 * printed (tsc prints its errors on stdout).
 */
export async function run (file: string, args: string[], options: { cwd: string, env: NodeJS.ProcessEnv, timeout?: number }): Promise<RunResult> {
  try {
    return await exec(file, args, { ...options, timeout: options.timeout ?? RUN_TIMEOUT_MS, maxBuffer: OUTPUT_BYTES_MAX })
  } catch (err) {
    const e = err as { code?: unknown, signal?: unknown, stdout?: string, stderr?: string }
    throw new Error(`${[file, ...args].join(' ')} in ${options.cwd} failed (${String(e.code ?? e.signal)}):\n${e.stdout ?? ''}${e.stderr ?? ''}`)
  }
}

/**
 * The environment of every child: the Node running the tests (24) first on
 * PATH; no node_modules/.bin entries, so the app's install cannot use the
 * repository's devDependencies (patch-package, tsc) by accident; no npm_*
 * variables of an outer `npm test` (npm_config_local_prefix, npm_package_*),
 * which must not steer the inner npm.
 */
function childEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) && !/^npm_config_(cache|registry|userconfig)$/i.test(key)) { continue }
    if (key === 'INIT_CWD' || key === 'NODE_OPTIONS') { continue }
    env[key] = value
  }
  const path = (process.env.PATH ?? '').split(delimiter).filter(p => p !== '' && !p.includes(`node_modules${sep}.bin`))
  env.PATH = [dirname(process.execPath), ...path].join(delimiter)
  return env
}

/**
 * Packs the repository and installs the tarball into a new app under
 * os.tmpdir(), with `@types/node` at the version the repository uses (a
 * TypeScript app on Node has it; the examples import node: modules).
 */
export async function createPackageApp (): Promise<PackageApp> {
  const env = childEnv()
  const packDir = await mkdtemp(join(tmpdir(), 'accord-p2p-pack-'))
  const dir = await mkdtemp(join(tmpdir(), 'accord-p2p-app-'))
  const remove = async (): Promise<void> => {
    await rm(packDir, { recursive: true, force: true })
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await run('npm', ['pack', '--pack-destination', packDir], { cwd: root, env, timeout: NPM_TIMEOUT_MS })
    const tarballs = (await readdir(packDir)).filter(f => f.endsWith('.tgz'))
    if (tarballs.length !== 1) { throw new Error(`npm pack left ${tarballs.length} tarballs in ${packDir}`) }

    const typesNode = JSON.parse(await readFile(join(root, 'node_modules/@types/node/package.json'), 'utf8')).version as string
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }, null, 2))
    await run('npm', ['install', join(packDir, tarballs[0]), `@types/node@${typesNode}`, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir, env, timeout: NPM_TIMEOUT_MS })
  } catch (err) {
    await remove()
    throw err
  }

  return {
    dir,
    packageDir: join(dir, 'node_modules', 'accord-p2p'),
    bin: join(dir, 'node_modules', '.bin', 'accord'),
    env,
    remove,
    async compileAndRun (name, source, options = {}) {
      const tsconfig = `tsconfig.${name}.json`
      await writeFile(join(dir, `${name}.ts`), source)
      await writeFile(join(dir, tsconfig), JSON.stringify({
        // skipLibCheck on, as `tsc --init` writes it: the libp2p modules an
        // app installs fresh need not agree on every declaration
        compilerOptions: { strict: true, module: 'nodenext', outDir: 'out', skipLibCheck: options.skipLibCheck ?? true },
        files: [`${name}.ts`]
      }, null, 2))
      await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', tsconfig], { cwd: dir, env })
      return run(process.execPath, ['--no-experimental-strip-types', join('out', `${name}.js`)], { cwd: dir, env })
    }
  }
}

/** The ```ts block right after `<!-- example: NAME -->` in README.md. */
export async function readmeExample (name: string): Promise<string> {
  const marker = `<!-- example: ${name} -->`
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  const start = readme.indexOf(marker)
  if (start < 0) { throw new Error(`README.md has no ${marker}`) }
  const match = /^\s*```ts\n([\s\S]*?)^```/m.exec(readme.slice(start + marker.length))
  if (match?.index !== 0) { throw new Error(`README.md has no ts block right after ${marker}`) }
  return match[1]
}
