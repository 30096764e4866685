// The shape of a QuestionnaireResponse to a known Questionnaire, for validating each shape once
// (WriteHookContext.shape): its structure with the values that vary from response to response
// masked, where the mask itself proves the value valid for its datatype. Structural validation of
// the PCL-5 response was ~0.5 ms of the API's ~4.2 ms per scored intake; responses to one
// instrument have few shapes (which items are present, declined or skipped).
import type { Coding, Questionnaire, QuestionnaireItem, QuestionnaireResponse, QuestionnaireResponseItem, QuestionnaireResponseItemAnswer, Reference, Resource } from '@medplum/fhirtypes';
import { questionnaireItemsByLinkId } from './items.ts';

/** FHIR id. */
const ID = /^[A-Za-z0-9\-.]{1,64}$/;
/** A relative reference to a resource (type and id). */
const LOCAL_REFERENCE = /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/;
/** Printable ASCII without leading or trailing space: a valid FHIR string whatever it says. */
const PLAIN_STRING = /^[\x21-\x7e](?:[\x20-\x7e]{0,254}[\x21-\x7e])?$/;
/** FHIR dateTime (the R4 regex). */
const DATE_TIME =
  /^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$/;

/** Per Questionnaire item: its answer options' Codings as JSON. */
const optionCodings = new WeakMap<QuestionnaireItem, Set<string>>();

function optionsOf(item: QuestionnaireItem): Set<string> {
  let set = optionCodings.get(item);
  if (!set) {
    set = new Set();
    for (const o of item.answerOption ?? []) if (o.valueCoding) set.add(JSON.stringify(o.valueCoding));
    optionCodings.set(item, set);
  }
  return set;
}

const maskString = (s: unknown): unknown => (typeof s === 'string' && PLAIN_STRING.test(s) ? '#string' : s);

function maskReference(ref: Reference | undefined): Reference | undefined {
  if (!ref || typeof ref !== 'object') return ref;
  const out: Record<string, unknown> = { ...ref };
  // The target type stays: it decides whether the reference is allowed here.
  if (typeof ref.reference === 'string' && LOCAL_REFERENCE.test(ref.reference)) out.reference = `${ref.reference.split('/')[0]}/#`;
  if (ref.display !== undefined) out.display = maskString(ref.display);
  return out as Reference;
}

function maskItems(items: QuestionnaireResponseItem[] | undefined, byLinkId: Map<string, QuestionnaireItem>): unknown {
  if (!Array.isArray(items)) return items;
  return items.map((item) => {
    const qItem = typeof item?.linkId === 'string' ? byLinkId.get(item.linkId) : undefined;
    if (!qItem) return item;
    const options = optionsOf(qItem);
    const answer = Array.isArray(item.answer)
      ? item.answer.map((a: QuestionnaireResponseItemAnswer) => {
          if (!a || typeof a !== 'object') return a;
          // A Coding exactly equal (same elements, same order) to one of the item's options is a
          // Coding of the Questionnaire, which was validated: any of them is as valid as another.
          const option = a.valueCoding !== undefined && options.has(JSON.stringify(a.valueCoding as Coding));
          const masked: Record<string, unknown> = option ? { ...a, valueCoding: '#option' } : { ...a };
          if (a.item) masked.item = maskItems(a.item, byLinkId);
          return masked;
        })
      : item.answer;
    return { ...item, answer, item: maskItems(item.item, byLinkId) };
  });
}

/**
 * The shape of `resource` (a QuestionnaireResponse to `q`): its id, identifier value, authored time,
 * the ids and displays of its subject, author, source and encounter, and every answer Coding equal
 * to one of its item's options masked; everything else as it is. Two responses with the same shape
 * differ only in masked values, each valid for its datatype where it stands, so they are equally
 * valid. Undefined for any other resource.
 */
export function responseShape(resource: Resource, q: Questionnaire): string | undefined {
  if (resource.resourceType !== 'QuestionnaireResponse') return undefined;
  const qr: QuestionnaireResponse = resource;
  const identifier = qr.identifier && typeof qr.identifier === 'object' ? { ...qr.identifier, value: maskString(qr.identifier.value) } : qr.identifier;
  const masked: Record<string, unknown> = {
    ...qr,
    id: typeof qr.id === 'string' && ID.test(qr.id) ? '#id' : qr.id,
    identifier,
    authored: typeof qr.authored === 'string' && DATE_TIME.test(qr.authored) ? '#dateTime' : qr.authored,
    subject: maskReference(qr.subject),
    author: maskReference(qr.author),
    source: maskReference(qr.source),
    encounter: maskReference(qr.encounter),
    item: maskItems(qr.item, questionnaireItemsByLinkId(q)),
  };
  return JSON.stringify(masked);
}
