// CarePlan/{id}/$stage-history: every recovery stage the plan has been in, oldest first, with the
// direction of each move, its recorded date, version and (when visible) the Provenance and
// organisation that made it. Reads through the caller's visibility, like the plan itself.
import type { CarePlan, Provenance } from '@medplum/fhirtypes';
import type { FhirOperation } from '@tic/fhir';
import { badRequest, unprocessable } from '@tic/fhir';
import { isRecoveryPlan } from '../recognise.ts';
import { stageHistoryParameters, stageTransitions } from '../stage.ts';

export function stageHistoryOperation(): FhirOperation {
  return {
    code: 'stage-history',
    resourceTypes: ['CarePlan'],
    instance: true,
    affectsState: false,
    async handler(req) {
      if (!req.id) throw badRequest('$stage-history runs on a CarePlan instance');
      const plan = await req.repo.read<CarePlan>('CarePlan', req.id);
      if (!isRecoveryPlan(plan)) throw unprocessable('CarePlan is not a recovery plan', 'CarePlan.category');
      const versions = await req.repo.history<CarePlan>('CarePlan', req.id);
      const provenances = await req.repo.search<Provenance>('Provenance', { target: `CarePlan/${req.id}`, _count: '1000' });
      return stageHistoryParameters(req.id, stageTransitions(versions), provenances);
    },
  };
}
