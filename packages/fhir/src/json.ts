// Hostile-input guards for JSON bodies: bounded nesting depth and array sizes, and no keys that
// could pollute prototypes. Applied to every request body before it reaches FHIR logic.
import { badRequest } from './outcomes.ts';

export interface JsonLimits {
  maxDepth: number;
  maxArrayLength: number;
}

export const defaultJsonLimits: JsonLimits = { maxDepth: 64, maxArrayLength: 10_000 };

const forbiddenKeys = new Set(['__proto__', 'constructor', 'prototype']);

/** Parses JSON text, rejecting bad syntax, excessive nesting, huge arrays and prototype keys. */
export function parseJsonBody(text: string, limits: JsonLimits = defaultJsonLimits): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw badRequest(`Malformed JSON: ${(e as Error).message}`);
  }
  checkJsonShape(value, limits);
  return value;
}

export function checkJsonShape(value: unknown, limits: JsonLimits = defaultJsonLimits): void {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > limits.maxDepth) throw badRequest(`JSON nested deeper than ${limits.maxDepth} levels`);
    if (Array.isArray(v)) {
      if (v.length > limits.maxArrayLength) throw badRequest(`JSON array longer than ${limits.maxArrayLength} items`);
      for (const item of v) stack.push([item, depth + 1]);
    } else {
      for (const key of Object.keys(v)) {
        if (forbiddenKeys.has(key)) throw badRequest(`Forbidden JSON property name "${key}"`);
        stack.push([(v as Record<string, unknown>)[key], depth + 1]);
      }
    }
  }
}
