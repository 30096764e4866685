// The transaction Bundle that carries a referral to the receiving organisation's FHIR server:
// a minimal Patient, the Consent, the ServiceRequest, the consented supporting data and the Task.
// Every entry is a conditional create on a business identifier derived from the source resource,
// so delivering the same referral again creates nothing new.
import type { Bundle, BundleEntry, Consent, ConsentProvision, Patient, Reference, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { REFERRAL_IDENTIFIER_SYSTEM } from '../codes.ts';

export interface DeliveryParties {
  /** The sending organisation as the receiving server knows it (its client's organisation there). */
  requester: string;
  /** The receiving organisation on the receiving server. */
  owner: string;
}

export interface ReferralContent {
  task: Task;
  serviceRequest?: ServiceRequest;
  patient: Patient;
  consent: Consent;
  supporting: Resource[];
}

/** Business identifier value of a source resource: its absolute URL on the sending server. */
export function sourceIdentifier(sourceBase: string, r: { resourceType: string; id?: string }): { system: string; value: string } {
  return { system: REFERRAL_IDENTIFIER_SYSTEM, value: `${sourceBase}/${r.resourceType}/${r.id}` };
}

function urn(i: number): string {
  return `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
}

function strip<T extends Resource>(r: T): T {
  const { id: _id, meta: _meta, ...rest } = r as T & { id?: string; meta?: unknown };
  return rest as T;
}

function withIdentifier<T extends Resource>(r: T, ident: { system: string; value: string }): T {
  const existing = ((r as { identifier?: Array<{ system?: string; value?: string }> }).identifier ?? []).filter((i) => i.system !== ident.system);
  return { ...r, identifier: [...existing, ident] } as T;
}

/** "Type/id" of a reference (relative or absolute, version dropped). */
function relative(reference: string): string {
  const parts = reference.split('/_history/')[0].split('/');
  return parts.slice(-2).join('/');
}

const query = (ident: { system: string; value: string }) => `identifier=${encodeURIComponent(ident.system)}|${encodeURIComponent(ident.value)}`;

export function buildDeliveryBundle(content: ReferralContent, sourceBase: string, parties: DeliveryParties): Bundle {
  const refs = new Map<string, string>();
  const entries: BundleEntry[] = [];
  const add = (source: Resource, target: Resource) => {
    const fullUrl = urn(entries.length + 1);
    refs.set(`${source.resourceType}/${source.id}`, fullUrl);
    const ident = sourceIdentifier(sourceBase, source);
    entries.push({ fullUrl, resource: withIdentifier(strip(target), ident), request: { method: 'POST', url: source.resourceType, ifNoneExist: query(ident) } });
    return fullUrl;
  };
  const map = (r: Reference | undefined): Reference | undefined => {
    const to = r?.reference ? refs.get(r.reference.split('/').slice(-2).join('/')) : undefined;
    return to ? { reference: to } : undefined;
  };
  const mapAll = (rs: Reference[] | undefined) => (rs ?? []).map(map).filter((r): r is Reference => !!r);

  const p = content.patient;
  const patientUrn = add(p, {
    resourceType: 'Patient',
    ...(p.identifier ? { identifier: p.identifier } : {}),
    ...(p.name ? { name: p.name } : {}),
    ...(p.birthDate ? { birthDate: p.birthDate } : {}),
    ...(p.gender ? { gender: p.gender } : {}),
  });
  const c = content.consent;
  add(c, { ...c, patient: { reference: patientUrn }, provision: { ...c.provision, actor: [{ role: c.provision?.actor?.[0]?.role ?? { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: parties.owner } }] } });
  const consentEntry = entries[entries.length - 1];
  for (const s of content.supporting) {
    const subjectKey = 'subject' in s ? 'subject' : 'patient' in s ? 'patient' : undefined;
    add(s, subjectKey ? ({ ...s, [subjectKey]: { reference: patientUrn } } as Resource) : s);
  }
  const sr = content.serviceRequest;
  if (sr) {
    add(sr, {
      ...sr,
      subject: { reference: patientUrn },
      requester: { reference: parties.requester },
      performer: [{ reference: parties.owner }],
      reasonReference: mapAll(sr.reasonReference) as ServiceRequest["reasonReference"],
      supportingInfo: mapAll([...(sr.supportingInfo ?? []), { reference: `Consent/${c.id}` }]),
    });
  }
  const t = content.task;
  const { businessStatus: _bs, ...task } = t;
  add(t, {
    ...task,
    ...(map(t.focus) ? { focus: map(t.focus) } : {}),
    for: { reference: patientUrn },
    requester: { reference: parties.requester },
    owner: { reference: parties.owner },
    input: (t.input ?? []).filter((i) => !i.valueReference || map(i.valueReference)).map((i) => (i.valueReference ? { ...i, valueReference: map(i.valueReference) } : i)),
  } as Task);
  // The Consent's other references (data at any level, actors of nested provisions) name resources
  // on this server: the parties and what travels in the Bundle are mapped; anything else becomes a
  // logical reference (identifier = its URL here), which no resource on the receiving server is,
  // so a receiver evaluating the Consent can only treat such a provision as possibly applying.
  const local = new Map<string, string>();
  if (t.owner?.reference) local.set(relative(t.owner.reference), parties.owner);
  if (t.requester?.reference) local.set(relative(t.requester.reference), parties.requester);
  const remote = (r: Reference | undefined): Reference | undefined => {
    if (!r?.reference) return r;
    const key = relative(r.reference);
    const to = local.get(key) ?? refs.get(key);
    if (to) return { reference: to, ...(r.display ? { display: r.display } : {}) };
    return { identifier: sourceIdentifier(sourceBase, { resourceType: key.split('/')[0], id: key.split('/')[1] }), ...(r.display ? { display: r.display } : {}) };
  };
  const mapProvision = (pr: ConsentProvision, root: boolean): ConsentProvision => {
    const out: ConsentProvision = { ...pr };
    if (!root && pr.actor) out.actor = pr.actor.map((a) => ({ ...a, reference: remote(a.reference) ?? a.reference }) as NonNullable<ConsentProvision["actor"]>[number]);
    if (pr.data) out.data = pr.data.map((d) => ({ ...d, reference: remote(d.reference) ?? d.reference }));
    if (pr.provision) out.provision = pr.provision.map((n) => mapProvision(n, false));
    return out;
  };
  const sent = consentEntry.resource as Consent;
  if (sent.provision) sent.provision = mapProvision(sent.provision, true);
  for (const e of entries) {
    // Drop empty arrays left by reference filtering.
    const body = e.resource as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(body)) if (Array.isArray(v) && v.length === 0) delete body[k];
  }
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}
