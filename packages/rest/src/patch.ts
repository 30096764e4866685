// JSON Patch (RFC 6902) applied to a copy of a resource.
import { badRequest, unprocessable } from '@tic/fhir';

export interface JsonPatchOp {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw badRequest(`Invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

const forbidden = new Set(['__proto__', 'constructor', 'prototype']);

function parentOf(doc: unknown, tokens: string[], path: string): [any, string] {
  let cur: any = doc;
  if (cur === null || typeof cur !== 'object') throw unprocessable(`Patch path "${path}" does not exist`);
  for (const t of tokens.slice(0, -1)) {
    if (forbidden.has(t)) throw badRequest(`Invalid path "${path}"`);
    cur = Array.isArray(cur) ? cur[Number(t)] : cur?.[t];
    if (cur === undefined || cur === null || typeof cur !== 'object') throw unprocessable(`Patch path "${path}" does not exist`);
  }
  const last = tokens[tokens.length - 1];
  if (forbidden.has(last)) throw badRequest(`Invalid path "${path}"`);
  return [cur, last];
}

function get(doc: unknown, path: string): unknown {
  let cur: any = doc;
  for (const t of pointer(path)) {
    cur = Array.isArray(cur) ? cur[Number(t)] : cur?.[t];
    if (cur === undefined) throw unprocessable(`Patch path "${path}" does not exist`);
  }
  return cur;
}

function index(arr: unknown[], token: string, path: string, forAdd: boolean): number {
  if (forAdd && token === '-') return arr.length;
  if (!/^(0|[1-9]\d*)$/.test(token)) throw badRequest(`Invalid array index in "${path}"`);
  const i = Number(token);
  if (i > arr.length || (!forAdd && i >= arr.length)) throw unprocessable(`Array index out of range in "${path}"`);
  return i;
}

function add(doc: any, path: string, value: unknown): any {
  const tokens = pointer(path);
  if (tokens.length === 0) return value;
  const [parent, last] = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) parent.splice(index(parent, last, path, true), 0, value);
  else parent[last] = value;
  return doc;
}

function remove(doc: any, path: string): unknown {
  const tokens = pointer(path);
  if (tokens.length === 0) throw badRequest('Cannot remove the whole resource');
  const [parent, last] = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) return parent.splice(index(parent, last, path, false), 1)[0];
  if (!(last in parent)) throw unprocessable(`Patch path "${path}" does not exist`);
  const old = parent[last];
  delete parent[last];
  return old;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function applyJsonPatch<T>(target: T, ops: unknown): T {
  if (!Array.isArray(ops)) throw badRequest('A JSON Patch body must be an array of operations');
  let doc: any = structuredClone(target);
  ops.forEach((raw, i) => {
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw unprocessable(`Patch operation ${i} applies to something that is no longer a resource`);
    const op = raw as JsonPatchOp;
    if (!op || typeof op !== 'object' || typeof op.path !== 'string') throw badRequest(`Invalid patch operation at index ${i}`);
    switch (op.op) {
      case 'add':
        doc = add(doc, op.path, structuredClone(op.value));
        break;
      case 'remove':
        remove(doc, op.path);
        break;
      case 'replace':
        remove(doc, op.path);
        doc = add(doc, op.path, structuredClone(op.value));
        break;
      case 'move': {
        if (op.from === undefined) throw badRequest(`Patch move at index ${i} needs "from"`);
        const v = remove(doc, op.from);
        doc = add(doc, op.path, v);
        break;
      }
      case 'copy':
        if (op.from === undefined) throw badRequest(`Patch copy at index ${i} needs "from"`);
        doc = add(doc, op.path, structuredClone(get(doc, op.from)));
        break;
      case 'test':
        if (!deepEqual(get(doc, op.path), op.value)) throw unprocessable(`Patch test failed at "${op.path}"`);
        break;
      default:
        throw badRequest(`Unknown patch operation "${String((op as { op?: unknown }).op)}" at index ${i}`);
    }
  });
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw unprocessable('A patch must leave a resource (a JSON object)');
  return doc as T;
}
