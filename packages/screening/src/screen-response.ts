// One screening pass over a validated response: which organisation's settings apply, the scores,
// and the Observations to write. Shared by the write hooks and $extract.
import type { Observation, Questionnaire, QuestionnaireResponse } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import type { OrganisationScreeningSettings, ScreeningConfig } from './config.ts';
import { configuredCutoff, settingsFor } from './config.ts';
import { buildObservations } from './observations.ts';
import type { ScoreResult } from './score-response.ts';
import { scoreResponse } from './score-response.ts';

/** The acting client's organisation, else an Organization that authored the response. */
export function organisationOf(qr: QuestionnaireResponse, request: RequestContext | undefined): string | undefined {
  if (request?.organization) return request.organization;
  const author = qr.author?.reference;
  return author?.startsWith('Organization/') ? author : undefined;
}

export interface Screening {
  organization?: string;
  settings: OrganisationScreeningSettings;
  scores: ScoreResult[];
  observations: Observation[];
}

export function screenResponse(config: ScreeningConfig, q: Questionnaire, qr: QuestionnaireResponse, request: RequestContext | undefined): Screening {
  const organization = organisationOf(qr, request);
  const settings = settingsFor(config, organization);
  const scores = scoreResponse(q, qr, (questionnaire, item) => configuredCutoff(settings, questionnaire, item));
  return { organization, settings, scores, observations: buildObservations(q, qr, scores) };
}
