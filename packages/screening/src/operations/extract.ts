// QuestionnaireResponse/$extract (SDC observation-based extraction). Type level: the response in a
// Parameters "questionnaire-response" parameter or as the body; instance level: a stored response.
// Returns the Observations as a transaction Bundle of conditional updates; stores nothing.
import { randomUUID } from 'node:crypto';
import type { Bundle, OperationDefinition, Questionnaire, QuestionnaireResponse } from '@medplum/fhirtypes';
import type { FhirOperation, OperationRequest } from '@tic/fhir';
import { badRequest } from '@tic/fhir';
import { identifierToken } from '../identifiers.ts';
import type { ScreeningRuntime } from '../runtime.ts';
import { questionnaireOf } from '../runtime.ts';
import { screenResponse } from '../screen-response.ts';
import { validateQuestionnaireResponse } from '../validate-response.ts';
import { resourceParam } from './params.ts';

export const extractDefinition: OperationDefinition = {
  resourceType: 'OperationDefinition',
  url: 'https://tic-exchange.org/fhir/OperationDefinition/QuestionnaireResponse-extract',
  name: 'Extract',
  status: 'active',
  kind: 'operation',
  code: 'extract',
  base: 'http://hl7.org/fhir/uv/sdc/OperationDefinition/QuestionnaireResponse-extract',
  resource: ['QuestionnaireResponse'],
  system: false,
  type: true,
  instance: true,
  affectsState: false,
  parameter: [
    { name: 'questionnaire-response', use: 'in', min: 0, max: '1', type: 'QuestionnaireResponse' },
    { name: 'questionnaire', use: 'in', min: 0, max: '1', type: 'Questionnaire' },
    { name: 'return', use: 'out', min: 1, max: '1', type: 'Bundle' },
  ],
};

async function responseOf(req: OperationRequest): Promise<QuestionnaireResponse> {
  if (req.id) return req.repo.read<QuestionnaireResponse>('QuestionnaireResponse', req.id);
  if (req.body?.resourceType === 'QuestionnaireResponse') return req.body;
  const param = resourceParam(req, 'questionnaire-response');
  if (param?.resourceType === 'QuestionnaireResponse') return param;
  throw badRequest('Send a QuestionnaireResponse, as the body or in the "questionnaire-response" parameter', 'Parameters.parameter');
}

export function extractOperation(runtime: ScreeningRuntime): FhirOperation {
  return {
    code: 'extract',
    resourceTypes: ['QuestionnaireResponse'],
    type: true,
    instance: true,
    affectsState: false,
    definition: extractDefinition,
    async handler(req) {
      const qr = await responseOf(req);
      const given = resourceParam(req, 'questionnaire');
      const q = given?.resourceType === 'Questionnaire' ? (given as Questionnaire) : await questionnaireOf(runtime, qr, req.repo);
      if (!q) throw badRequest('The Questionnaire of this response is not known', 'QuestionnaireResponse.questionnaire');
      validateQuestionnaireResponse(qr, q);
      const { observations } = screenResponse(runtime.config, q, qr, req.request);
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: observations.map((resource) => {
          const identifier = resource.identifier?.[0];
          return {
            fullUrl: `urn:uuid:${randomUUID()}`,
            resource,
            request: identifier
              ? { method: 'PUT', url: `Observation?identifier=${encodeURIComponent(identifierToken(identifier))}` }
              : { method: 'POST', url: 'Observation' },
          };
        }),
      };
      return bundle;
    },
  };
}
