// Reading $operation inputs from a Parameters body (POST) or the query string (GET).
import type { Parameters, ParametersParameter, Reference } from '@medplum/fhirtypes';
import type { OperationRequest } from '@tic/fhir';
import { badRequest } from '@tic/fhir';

export interface OperationInputs {
  string(name: string): string | undefined;
  strings(name: string): string[];
  number(name: string): number | undefined;
  reference(name: string): string | undefined;
}

function valueOf(p: ParametersParameter): string | undefined {
  const v = p.valueCode ?? p.valueString ?? p.valueUri ?? p.valueId ?? p.valueCoding?.code ?? p.valueCodeableConcept?.coding?.[0]?.code ?? p.valueReference?.reference;
  if (v !== undefined) return v;
  if (p.valueDecimal !== undefined) return String(p.valueDecimal);
  if (p.valueInteger !== undefined) return String(p.valueInteger);
  return undefined;
}

export function operationInputs(req: OperationRequest): OperationInputs {
  const body = req.body;
  if (body && body.resourceType !== 'Parameters') throw badRequest('The body of this operation must be a Parameters resource');
  const params = (body as Parameters | undefined)?.parameter ?? [];
  const all = (name: string): string[] => {
    const fromBody = params.filter((p) => p.name === name).map(valueOf).filter((v): v is string => v !== undefined);
    const fromQuery = (req.query[name] ?? []).flatMap((v) => v.split(','));
    return [...fromBody, ...fromQuery].filter((v) => v !== '');
  };
  return {
    string: (name) => all(name)[0],
    strings: all,
    number(name) {
      const v = all(name)[0];
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isFinite(n)) throw badRequest(`${name} must be a number`, name);
      return n;
    },
    reference(name) {
      const p = params.find((x) => x.name === name);
      const ref: Reference | undefined = p?.valueReference;
      return ref?.reference ?? all(name)[0];
    },
  };
}
