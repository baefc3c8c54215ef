/**
 * The CRDT HTTP API of `accord start` processes (a RaftScenario's nodes),
 * for the end-to-end CRDT specs: ops, values, and waiting for convergence.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { API_TOKEN_FILE } from '../../node/http-api.ts'
import { waitFor } from './nodes.ts'
import type { ScenarioNode } from './scenario.ts'

/** Bounds a hung wait only (below the tests' timeouts, so a failure names what it waited for). */
export const CRDT_DEADLINE_MS = 60_000

/** A JSON request to `node`'s API (with its bearer token when it has one). */
export async function crdtRequest (node: ScenarioNode, method: string, path: string, body?: unknown, timeoutMs = 3000): Promise<{ status: number, json: any }> {
  const token = await readFile(join(node.dataDir, API_TOKEN_FILE), 'utf8').then(t => t.trim(), () => null)
  const response = await fetch(`${node.apiUrl}${path}`, {
    method,
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: { ...(token != null ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    signal: AbortSignal.timeout(timeoutMs)
  })
  return { status: response.status, json: await response.json().catch(() => ({})) }
}

/** PUT /v1/crdt/<name> {type}; throws unless created or there (201, 200). */
export async function createCrdt (node: ScenarioNode, name: string, type: string): Promise<void> {
  const { status, json } = await crdtRequest(node, 'PUT', `/v1/crdt/${name}`, { type })
  if (status !== 201 && status !== 200) { throw new Error(`PUT /v1/crdt/${name} on node ${node.index}: ${status} ${JSON.stringify(json)}`) }
}

/** POST /v1/crdt/<name> `op`; throws unless 200. */
export async function crdtOp (node: ScenarioNode, name: string, op: Record<string, unknown>): Promise<void> {
  const { status, json } = await crdtRequest(node, 'POST', `/v1/crdt/${name}`, op)
  if (status !== 200) { throw new Error(`POST /v1/crdt/${name} ${JSON.stringify(op)} on node ${node.index}: ${status} ${JSON.stringify(json)}`) }
}

/** A CRDT's value as compared here: a set's elements JSON-encoded and sorted, anything else as is. */
export function comparable (value: unknown): unknown {
  return Array.isArray(value) ? value.map(v => JSON.stringify(v)).sort() : value
}

/** `GET /v1/crdt/<name>`'s value on each of `nodes` (comparable()), null where it does not answer 200. */
export async function crdtValues (nodes: ScenarioNode[], name: string): Promise<unknown[]> {
  return Promise.all(nodes.map(async node => {
    const { status, json } = await crdtRequest(node, 'GET', `/v1/crdt/${name}`).catch(() => ({ status: 0, json: null }))
    return status === 200 ? comparable(json.value) : null
  }))
}

/** Wait until every node of `nodes` holds `expected[name]` (comparable()) for every name. */
export async function waitForCrdtValues (nodes: ScenarioNode[], expected: Record<string, unknown>, what: string): Promise<void> {
  let last: Record<string, unknown[]> = {}
  const want = Object.fromEntries(Object.entries(expected).map(([name, value]) => [name, JSON.stringify(comparable(value))]))
  await waitFor(async () => {
    last = Object.fromEntries(await Promise.all(Object.keys(expected).map(async name => [name, await crdtValues(nodes, name)] as const)))
    return Object.entries(last).every(([name, values]) => values.every(v => JSON.stringify(v) === want[name]))
  }, what, CRDT_DEADLINE_MS).catch(err => {
    throw new Error(`${(err as Error).message}: nodes ${nodes.map(n => n.index).join(',')} hold ${JSON.stringify(last)}, expected ${JSON.stringify(expected)}`)
  })
}

/** Wait until every node of `nodes` answers the same value (comparable()) for every one of `names`; resolves to those values. */
export async function waitForCrdtAgreement (nodes: ScenarioNode[], names: string[], what: string): Promise<Record<string, unknown>> {
  let last: Record<string, unknown[]> = {}
  await waitFor(async () => {
    last = Object.fromEntries(await Promise.all(names.map(async name => [name, await crdtValues(nodes, name)] as const)))
    return Object.values(last).every(values => values[0] !== null && values.every(v => JSON.stringify(v) === JSON.stringify(values[0])))
  }, what, CRDT_DEADLINE_MS).catch(err => {
    throw new Error(`${(err as Error).message}: nodes ${nodes.map(n => n.index).join(',')} hold ${JSON.stringify(last)}`)
  })
  return Object.fromEntries(Object.entries(last).map(([name, values]) => [name, values[0]]))
}

/** Wait until every node of `nodes` is connected to `count` others (GET /v1/status members). */
export async function waitForConnected (nodes: ScenarioNode[], count: number, what: string): Promise<void> {
  await waitFor(async () => {
    const statuses = await Promise.all(nodes.map(async node => crdtRequest(node, 'GET', '/v1/status').catch(() => null)))
    return statuses.every(s => s?.status === 200 && s.json.members.filter((m: { connected: boolean }) => m.connected).length >= count)
  }, what, CRDT_DEADLINE_MS)
}
