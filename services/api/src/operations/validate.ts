// $validate (type and instance level): validates a resource without storing it.
import type { OperationOutcome, Parameters, Resource } from '@medplum/fhirtypes';
import type { FhirOperation } from '@tic/fhir';
import { allOk, badRequest } from '@tic/fhir';
import type { Validator } from '@tic/fhir';

export function validateOperation(validator: Validator): FhirOperation {
  return {
    code: 'validate',
    resourceTypes: ['*'],
    type: true,
    instance: true,
    affectsState: false,
    async handler(req): Promise<OperationOutcome> {
      let resource: Resource | undefined = req.body;
      if (resource?.resourceType === 'Parameters' && req.resourceType !== 'Parameters') {
        resource = (resource as Parameters).parameter?.find((p) => p.name === 'resource')?.resource;
      }
      if (!resource) {
        if (req.id && req.resourceType) resource = await req.repo.read(req.resourceType as Resource['resourceType'], req.id);
        else throw badRequest('$validate needs a resource in the body or a Parameters "resource"');
      }
      if (req.resourceType && resource.resourceType !== req.resourceType) throw badRequest(`Resource type ${resource.resourceType} does not match ${req.resourceType}`);
      const issues = validator.validate(resource);
      return issues.length > 0 ? { resourceType: 'OperationOutcome', issue: issues } : allOk('Validation passed');
    },
  };
}
