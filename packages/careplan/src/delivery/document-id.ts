// Stable names for one sending of a plan's summary: the document's identifier (a name-based UUID,
// RFC 9562 version 5) and the job key. The same plan version sent by the same organisation to the
// same recipient is the same document, so a redelivery is recognised by the receiver (conditional
// create on Bundle.identifier) and a repeated request replaces the pending job instead of adding one.
import { createHash } from 'node:crypto';

/** RFC 9562 namespace for URLs. */
const URL_NAMESPACE = '6ba7b811-9dad-11d1-80b4-00c04fd430c8';

/** Version 5 (SHA-1, name-based) UUID of `name` in `namespace`. */
export function uuidV5(name: string, namespace = URL_NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(Buffer.concat([ns, Buffer.from(name, 'utf8')])).digest();
  const b = Buffer.from(hash.subarray(0, 16));
  b[6] = (b[6] & 0x0f) | 0x50;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export interface SummarySending {
  /** This server's FHIR base URL. */
  sourceBase: string;
  carePlanId: string;
  /** The plan version summarised. */
  version: string;
  /** Organization/{id} receiving the document. */
  recipient: string;
  /** Organization/{id} that asked for the sending (absent: the server itself). */
  sender?: string;
}

/** Document identifiers are URIs (urn:uuid), as FHIR documents' Bundle.identifier usually are. */
export const DOCUMENT_IDENTIFIER_SYSTEM = 'urn:ietf:rfc:3986';

const nameOf = (s: SummarySending): string => `${s.sourceBase}/CarePlan/${s.carePlanId}/_history/${s.version}/$summary?recipient=${s.recipient}&sender=${s.sender ?? 'system'}`;

/** Bundle.identifier of the summary document for this sending. */
export function summaryDocumentIdentifier(s: SummarySending): { system: string; value: string } {
  return { system: DOCUMENT_IDENTIFIER_SYSTEM, value: `urn:uuid:${uuidV5(nameOf(s))}` };
}

/** The document's Composition id, from its identifier (stable, so a redelivered document is the same document). */
export function summaryCompositionId(identifier: { system?: string; value?: string }): string {
  return uuidV5(`${identifier.system ?? ''}|${identifier.value ?? ''}#Composition`);
}

export const SEND_SUMMARY_JOB = 'careplan-send-summary';

/** One pending job per plan version, recipient and sender (a repeated request replaces it). */
export function sendSummaryJobKey(s: SummarySending): string {
  return `${SEND_SUMMARY_JOB}:${s.carePlanId}:${s.version}:${s.recipient}:${s.sender ?? 'system'}`;
}
