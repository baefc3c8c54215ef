/**
 * accord as a library: `createAccordNode(config)` starts a node.
 */
export { createAccordNode } from './accord-node.ts'
export type { AccordNode, CreateAccordNodeOptions, NodeStatus, PeerStatus } from './accord-node.ts'
export { defaultConfig } from './config.ts'
export type { AccordConfig, LogLevel } from './config.ts'
export type { Member } from './discovery.ts'
export { UserError } from './errors.ts'
