// FHIR R4 privacy Consent evaluation: may organisation O see resource R at time T? Pure.
//
// A provision applies to a question when every criterion it states matches (within one element
// any listed value may match; absent elements do not restrict). Nested provisions are exceptions
// that apply only within their parent's scope; the most specific applying provision decides
// (a nested deny inside a permit withholds what it matches, a nested permit inside a deny allows
// it again). Several applying siblings that disagree: deny. Root type absent: permit, or deny when
// policyRule is OPTOUT; nested type absent: deny.
//
// What this code cannot decide is "maybe", never a guess: a provision that may apply counts both
// ways, and only an unambiguous permit permits. So a deny that might apply withholds, a permit that
// might not apply does not permit. Undecidable here: purpose (the receiver's purpose of use is not
// known), dataPeriod, data with meaning related/dependents beyond the named resource itself,
// authoredby, class codes that are neither resource types nor profiles, actors other than
// Organization (a Practitioner, PractitionerRole, CareTeam, Group or Device may act for O;
// Patient and RelatedPerson never are O), actors whose role is coded as anything but a recipient
// (IRCP, PRCP), action codes outside consent-action, code and securityLabel when the caller has
// no content for R, unparseable dates, and any modifierExtension (the whole Consent then denies).
// Period bounds given as dates (no time zone) are read as the whole day in any time zone: a permit
// runs from the latest possible start to the earliest possible end, a deny the other way round.
import type { CodeableConcept, Coding, Consent, ConsentProvision, Period } from '@medplum/fhirtypes';

export const CONSENT_RESOURCE_TYPES_SYSTEM = 'http://hl7.org/fhir/resource-types';
export const CONSENT_ACTION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/consentaction';
const PARTICIPATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType';
const ACT_CODE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const RECIPIENT_ROLES = new Set(['IRCP', 'PRCP']);
const DISCLOSURE_ACTIONS = new Set(['access', 'use', 'disclose']);
const OTHER_ACTIONS = new Set(['collect', 'correct']);

export type ConsentOutcome = 'permit' | 'deny' | 'none';

/** The resource whose disclosure is asked about: type and id always; its content when the caller has it. */
export interface ConsentSubject {
  resourceType: string;
  id?: string;
  /** The resource itself (meta.security, meta.profile, codes); without it, code and securityLabel criteria are undecidable. */
  content?: { meta?: { security?: Coding[]; profile?: string[] } };
}

export interface ConsentQuestion {
  /** The receiving organisation, "Organization/{id}". */
  organization: string;
  resource: ConsentSubject;
  now: Date;
}

/** What a module adds to the R4 reading. */
export interface ConsentPolicy {
  /** A permit counts only when a provision on its path (itself or an ancestor) names the organisation in actor. */
  requireActor?: boolean;
  /** A permit counts only when a provision on its path names the resource by class, code, securityLabel or data. */
  requireData?: boolean;
  /**
   * Permit provisions' data criteria (class, code, securityLabel, dataPeriod, data) are not applied
   * to this resource: it travels with any permit that applies to the organisation. Deny provisions'
   * data criteria still are (a deny without them withholds it).
   */
  ignorePermitData?: boolean;
}

// Three-valued match: 0 no, 1 maybe, 2 yes.
type M = 0 | 1 | 2;
const NO: M = 0;
const MAYBE: M = 1;
const YES: M = 2;
const all = (ms: M[]): M => ms.reduce<M>((a, b) => (a < b ? a : b), YES);
const any = (ms: M[]): M => ms.reduce<M>((a, b) => (a > b ? a : b), NO);

export function relativeReference(reference: string | undefined): string | undefined {
  if (!reference || reference.startsWith('#') || reference.includes('?')) return undefined;
  const parts = reference.split('/');
  return parts.length >= 2 ? `${parts[parts.length - 2]}/${parts[parts.length - 1]}` : undefined;
}

const HOUR = 3_600_000;

/**
 * The instants a FHIR date/dateTime bound may stand for: [earliest, latest]. `end`: the exclusive
 * end of the stated precision (a date ends when the next day begins). Dates without a time zone
 * may be anywhere from UTC-12 to UTC+14. undefined: not a FHIR date.
 */
export function boundRange(value: string, end: boolean): [number, number] | undefined {
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/.exec(value);
  if (!m) return undefined;
  if (m[4] !== undefined) {
    const t = Date.parse(value);
    return Number.isNaN(t) ? undefined : [t, t];
  }
  const y = Number(m[1]);
  const mo = m[2] ? Number(m[2]) - 1 : 0;
  const d = m[3] ? Number(m[3]) : 1;
  if (mo > 11 || d < 1 || d > 31) return undefined;
  let t = Date.UTC(y, mo, d);
  if (end) t = m[3] ? Date.UTC(y, mo, d + 1) : m[2] ? Date.UTC(y, mo + 1, 1) : Date.UTC(y + 1, 0, 1);
  return [t - 14 * HOUR, t + 12 * HOUR];
}

function periodMatch(period: Period | undefined, now: number): M {
  if (!period) return YES;
  const s = period.start ? boundRange(period.start, false) : [-Infinity, -Infinity];
  const e = period.end ? boundRange(period.end, true) : [Infinity, Infinity];
  if (!s || !e) return MAYBE;
  if (now < s[0] || now >= e[1]) return NO;
  if (s[1] <= now && now < e[0]) return YES;
  return MAYBE;
}

function periodEdges(period: Period | undefined, out: number[]): void {
  if (!period) return;
  for (const [v, end] of [[period.start, false], [period.end, true]] as const) {
    const r = v ? boundRange(v, end) : undefined;
    if (r) out.push(r[0], r[1]);
  }
}

function actorMatch(p: ConsentProvision, organization: string): M {
  if (!p.actor?.length) return YES;
  const org = relativeReference(organization);
  return any(
    p.actor.map((a) => {
      const codes = (a.role?.coding ?? []).filter((c) => c.code);
      if (codes.length && !codes.some((c) => (!c.system || c.system === PARTICIPATION_SYSTEM) && RECIPIENT_ROLES.has(c.code!))) return MAYBE;
      const ref = relativeReference(a.reference?.reference);
      if (!ref) return MAYBE;
      const type = ref.split('/')[0];
      if (type === 'Organization') return ref === org ? YES : NO;
      if (type === 'Patient' || type === 'RelatedPerson') return NO;
      return MAYBE;
    }),
  );
}

function actionMatch(p: ConsentProvision): M {
  if (!p.action?.length) return YES;
  return any(
    p.action.map((concept) =>
      any(
        (concept.coding ?? []).map((c) => {
          if (c.system !== CONSENT_ACTION_SYSTEM || !c.code) return MAYBE;
          return DISCLOSURE_ACTIONS.has(c.code) ? YES : OTHER_ACTIONS.has(c.code) ? NO : MAYBE;
        }).concat(concept.coding?.length ? [] : [MAYBE]),
      ),
    ),
  );
}

const sameCoding = (a: Coding, b: Coding) => !!a.code && a.code === b.code && (a.system ?? '') === (b.system ?? '');

function codingsIn(value: unknown, out: Coding[], depth = 0): void {
  if (depth > 12 || !value || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    for (const v of value) codingsIn(v, out, depth + 1);
    return;
  }
  const o = value as Record<string, unknown>;
  if (typeof o.code === 'string' && (typeof o.system === 'string' || o.system === undefined) && depth > 0) out.push(o as Coding);
  for (const [k, v] of Object.entries(o)) if (k !== 'text' && k !== 'contained') codingsIn(v, out, depth + 1);
}

function classMatch(p: ConsentProvision, r: ConsentSubject): M {
  if (!p.class?.length) return YES;
  return any(
    p.class.map((c) => {
      if (!c.code) return MAYBE;
      if (c.code.includes('://')) {
        if (!r.content) return MAYBE;
        return (r.content.meta?.profile ?? []).some((u) => u.split('|')[0] === c.code!.split('|')[0]) ? YES : NO;
      }
      if (!c.system || c.system === CONSENT_RESOURCE_TYPES_SYSTEM) return c.code === r.resourceType ? YES : NO;
      return MAYBE;
    }),
  );
}

function codeMatch(p: ConsentProvision, r: ConsentSubject): M {
  if (!p.code?.length) return YES;
  if (!r.content) return MAYBE;
  const found: Coding[] = [];
  codingsIn(r.content, found);
  return any(
    p.code.map((concept: CodeableConcept) => {
      const wanted = (concept.coding ?? []).filter((c) => c.code);
      if (!wanted.length) return MAYBE;
      return wanted.some((w) => found.some((f) => sameCoding(w, f))) ? YES : NO;
    }),
  );
}

function labelMatch(p: ConsentProvision, r: ConsentSubject): M {
  if (!p.securityLabel?.length) return YES;
  if (!r.content) return MAYBE;
  const labels = r.content.meta?.security ?? [];
  // All the stated labels must be on the resource.
  return all(p.securityLabel.map((l) => (!l.code ? MAYBE : labels.some((x) => sameCoding(l, x)) ? YES : NO)));
}

function dataMatch(p: ConsentProvision, r: ConsentSubject): M {
  if (!p.data?.length) return YES;
  const self = r.id ? `${r.resourceType}/${r.id}` : undefined;
  return any(
    p.data.map((d) => {
      const ref = relativeReference(d.reference?.reference);
      if (!ref || d.meaning === 'authoredby') return MAYBE;
      if (self && ref === self) return YES;
      // instance: that resource only. related/dependents: also what it refers to / what refers to it (not resolved here).
      if (d.meaning === 'instance') return self ? NO : MAYBE;
      return MAYBE;
    }),
  );
}

interface Path {
  actor: boolean;
  data: boolean;
}

function evaluate(p: ConsentProvision, type: 'permit' | 'deny', q: ConsentQuestion, policy: ConsentPolicy, now: number, path: Path): Set<ConsentOutcome> {
  if (p.modifierExtension?.length) return new Set(['deny']);
  const skipData = type === 'permit' && !!policy.ignorePermitData;
  const actor = actorMatch(p, q.organization);
  const dataCriteria = skipData ? [] : [classMatch(p, q.resource), codeMatch(p, q.resource), labelMatch(p, q.resource), dataMatch(p, q.resource)];
  const dataTime = skipData || !p.dataPeriod ? YES : MAYBE;
  const purpose = p.purpose?.length ? MAYBE : YES;
  const match = all([periodMatch(p.period, now), actor, actionMatch(p), purpose, dataTime, ...dataCriteria]);
  if (match === NO) return new Set(['none']);
  const named = !skipData && (p.class?.length || p.code?.length || p.securityLabel?.length || p.data?.length) && all(dataCriteria) === YES;
  const here: Path = { actor: path.actor || (!!p.actor?.length && actor === YES), data: path.data || !!named };
  const outcomes = new Set<ConsentOutcome>();
  let mayFallThrough = true;
  for (const nested of p.provision ?? []) {
    const r = evaluate(nested, nested.type ?? 'deny', q, policy, now, here);
    for (const o of r) if (o !== 'none') outcomes.add(o);
    if (!r.has('none')) mayFallThrough = false;
  }
  if (mayFallThrough) {
    const counts = type === 'deny' || ((!policy.requireActor || here.actor) && (!policy.requireData || here.data));
    outcomes.add(type === 'deny' ? 'deny' : counts ? 'permit' : 'none');
  }
  if (match === MAYBE) outcomes.add('none');
  return outcomes;
}

function rootType(consent: Consent): 'permit' | 'deny' {
  if (consent.provision?.type) return consent.provision.type;
  const optOut = (consent.policyRule?.coding ?? []).some((c) => (!c.system || c.system === ACT_CODE_SYSTEM) && (c.code === 'OPTOUT' || c.code === 'OPTOUTE'));
  return optOut ? 'deny' : 'permit';
}

/**
 * Every outcome one Consent may give the question: "none" when it does not apply (or may not).
 * A Consent that is not active gives none; one without provision, its base policy (root type).
 */
export function consentOutcomes(consent: Consent, q: ConsentQuestion, policy: ConsentPolicy = {}): Set<ConsentOutcome> {
  if (consent.status !== 'active') return new Set(['none']);
  if (consent.modifierExtension?.length) return new Set(['deny']);
  return evaluate(consent.provision ?? {}, rootType(consent), q, policy, q.now.getTime(), { actor: false, data: false });
}

/** One Consent's answer: permit only when it permits for certain; deny when it may deny. */
export function consentOutcome(consent: Consent, q: ConsentQuestion, policy: ConsentPolicy = {}): ConsentOutcome {
  const o = consentOutcomes(consent, q, policy);
  return o.has('deny') ? 'deny' : o.size === 1 && o.has('permit') ? 'permit' : 'none';
}

export interface ConsentDecision {
  decision: ConsentOutcome;
  /** A Consent that permits (when the decision is permit). */
  consent?: Consent;
  /** The first instant after `now` at which the decision may change (ISO), if one is known from the periods. */
  until?: string;
}

function decideAt(consents: Consent[], q: ConsentQuestion, policy: ConsentPolicy): { decision: ConsentOutcome; consent?: Consent } {
  let permit: Consent | undefined;
  for (const c of consents) {
    const o = consentOutcome(c, q, policy);
    if (o === 'deny') return { decision: 'deny' };
    if (o === 'permit' && !permit) permit = c;
  }
  return permit ? { decision: 'permit', consent: permit } : { decision: 'none' };
}

function collectEdges(p: ConsentProvision | undefined, out: number[]): void {
  if (!p) return;
  periodEdges(p.period, out);
  for (const n of p.provision ?? []) collectEdges(n, out);
}

/**
 * Several Consents of one person: a deny (even a possible one) in any of them wins; otherwise a
 * permit in any of them permits; otherwise none. `until`: when the answer may next change, found
 * by asking again at every period bound after `now`.
 */
export function decideConsents(consents: Consent[], q: ConsentQuestion, policy: ConsentPolicy = {}): ConsentDecision {
  const first = decideAt(consents, q, policy);
  const edges: number[] = [];
  for (const c of consents) if (c.status === 'active') collectEdges(c.provision, edges);
  const now = q.now.getTime();
  const later = [...new Set(edges.filter((t) => t > now))].sort((a, b) => a - b);
  for (const t of later) {
    if (decideAt(consents, { ...q, now: new Date(t) }, policy).decision !== first.decision) return { ...first, until: new Date(t).toISOString() };
  }
  return first;
}
