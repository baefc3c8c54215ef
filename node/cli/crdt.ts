import { UserError } from '../errors.ts'
import { apiRequest, resolveApiTarget } from './api-client.ts'
import { parseFlagsAndPositionals } from './args.ts'

export const CRDT_HELP = `Usage: accord crdt create NAME TYPE [flags]
       accord crdt op NAME JSON [flags]
       accord crdt get NAME [flags]
       accord crdt list [flags]

Create, change and read the named CRDTs every member of the cluster holds
(conflict-free replicated data types: every node takes writes, and all
converge). A CRDT created on one node appears on the others.

  accord crdt create NAME TYPE   TYPE: g-counter, pn-counter, g-set, or-set, lww-register,
                                 mv-register, or-map, lww-map, rga (text)
  accord crdt op NAME JSON       apply one op, e.g. '{"op":"increment","by":2}',
                                 '{"op":"add","value":"x"}', '{"op":"set","key":"k","value":1}',
                                 '{"op":"delete","key":"k"}'; rga: '{"op":"insert","index":0,"text":"hi"}',
                                 '{"op":"delete","index":0,"length":1}' (UTF-16 positions);
                                 prints the new value
  accord crdt get NAME           print the value (JSON)
  accord crdt list               print NAME TYPE, one CRDT a line

Names: 1..64 letters, digits, ".", "_", "-", starting with a letter or digit.

  --api URL        the node's HTTP API (default http://127.0.0.1:7070)
  --data-dir DIR   find the API (and its token) of the node running from DIR
  --token T        bearer token (also ACCORD_API_TOKEN)
`

const POSITIONALS: Record<string, number> = { create: 2, op: 2, get: 1, list: 0 }

export async function crdtCommand (args: string[]): Promise<void> {
  const [action, ...rest] = args
  if (action === undefined || !(action in POSITIONALS)) { throw new UserError('crdt: expected create, op, get or list (see accord crdt --help)') }
  const { values: flags, positionals } = parseFlagsAndPositionals(`crdt ${action}`, rest, {
    api: { type: 'string' },
    'data-dir': { type: 'string' },
    token: { type: 'string' }
  }, POSITIONALS[action])
  if (positionals.length !== POSITIONALS[action]) {
    throw new UserError(`crdt ${action}: expected ${{ create: 'NAME TYPE', op: 'NAME JSON', get: 'NAME', list: 'no arguments' }[action] ?? ''}`)
  }
  const target = await resolveApiTarget(flags)
  const [name, second] = positionals
  const path = `/v1/crdt/${encodeURIComponent(name ?? '')}`
  const fail = (response: { status: number, json: any }): never => {
    throw new UserError(`crdt ${action}: ${response.status} ${String(response.json?.error ?? '')}`)
  }
  switch (action) {
    case 'create': {
      const response = await apiRequest(target, 'PUT', path, { body: JSON.stringify({ type: second }), contentType: 'application/json' })
      if (response.status !== 200 && response.status !== 201) { fail(response) }
      process.stdout.write(`${name}: ${String(response.json.type)} (${response.json.created === true ? 'created' : 'exists'})\n`)
      return
    }
    case 'op': {
      try { JSON.parse(second) } catch { throw new UserError('crdt op: the op must be JSON, e.g. \'{"op":"increment","by":1}\'') }
      const response = await apiRequest(target, 'POST', path, { body: second })
      if (response.status !== 200) { fail(response) }
      process.stdout.write(`${JSON.stringify(response.json.value)}\n`)
      return
    }
    case 'get': {
      const response = await apiRequest(target, 'GET', path)
      if (response.status === 404) { throw new UserError(`crdt get: no such CRDT: ${name}`) }
      if (response.status !== 200) { fail(response) }
      process.stdout.write(`${JSON.stringify(response.json.value)}\n`)
      return
    }
    default: {
      const response = await apiRequest(target, 'GET', '/v1/crdt')
      if (response.status !== 200) { fail(response) }
      for (const crdt of response.json.crdts as Array<{ name: string, type: string }>) { process.stdout.write(`${crdt.name} ${crdt.type}\n`) }
    }
  }
}
