// Identifiers of the resources derived from one QuestionnaireResponse. They depend on the response's
// business identifier (else its id), so re-scoring an amended or re-posted response finds and
// updates the same Observations and never repeats the protocol.
import { createHash } from 'node:crypto';
import type { Identifier, QuestionnaireResponse } from '@medplum/fhirtypes';

/** A stable key for the response; undefined when it has neither identifier nor id nor subject. */
export function responseKey(qr: QuestionnaireResponse): string | undefined {
  let basis: string | undefined;
  if (qr.identifier?.value) basis = `identifier:${qr.identifier.system ?? ''}|${qr.identifier.value}`;
  else if (qr.id) basis = `id:${qr.id}`;
  else if (qr.subject?.reference && qr.authored) basis = `content:${qr.questionnaire ?? ''}|${qr.subject.reference}|${qr.authored}`;
  return basis ? createHash('sha256').update(basis).digest('hex').slice(0, 32) : undefined;
}

export function derivedIdentifier(system: string, key: string, part: string): Identifier {
  return { system, value: `${key}.${part}` };
}

/** The token search value "system|value" for an identifier. */
export function identifierToken(identifier: Identifier): string {
  return `${identifier.system ?? ''}|${identifier.value ?? ''}`;
}
