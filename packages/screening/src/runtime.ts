// What the hooks and operations share: the validated config, the hosted instruments, a clock, and
// how a response finds its Questionnaire.
import type { Questionnaire, QuestionnaireResponse } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { unprocessable } from '@tic/fhir';
import type { ScreeningConfig } from './config.ts';
import type { InstrumentIndex } from './instruments.ts';
import { resolveQuestionnaire } from './instruments.ts';

export interface ScreeningRuntime {
  config: ScreeningConfig;
  instruments: InstrumentIndex;
  now: () => Date;
}

/** The Questionnaire of a response, or a 422 when it cannot be found (unless configured to accept). */
export async function questionnaireOf(runtime: ScreeningRuntime, qr: QuestionnaireResponse, repo: ResourceRepository | undefined): Promise<Questionnaire | undefined> {
  const q = qr.questionnaire ? await resolveQuestionnaire(qr.questionnaire, runtime.instruments, repo) : undefined;
  if (!q && runtime.config.unknownQuestionnaire !== 'accept') {
    throw unprocessable(qr.questionnaire ? 'The Questionnaire of this response is not known to this server' : 'QuestionnaireResponse.questionnaire is required', 'QuestionnaireResponse.questionnaire');
  }
  return q;
}

export function isFinished(qr: QuestionnaireResponse): boolean {
  return qr.status === 'completed' || qr.status === 'amended';
}

/** Checks beyond the item tree for a finished response to a hosted instrument. */
export function checkScreeningResponse(qr: QuestionnaireResponse): void {
  if (isFinished(qr) && !qr.subject?.reference?.startsWith('Patient/')) {
    throw unprocessable('A completed screening response needs a Patient subject', 'QuestionnaireResponse.subject');
  }
}
