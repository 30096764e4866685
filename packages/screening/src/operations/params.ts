// Reads operation parameters from the query string (GET) and a Parameters body (POST).
import type { Parameters, ParametersParameter, Resource } from '@medplum/fhirtypes';
import type { OperationRequest } from '@tic/fhir';

function primitive(p: ParametersParameter): string | undefined {
  const v = p.valueString ?? p.valueCode ?? p.valueUri ?? p.valueCanonical ?? p.valueId ?? p.valueReference?.reference ?? p.valueInteger ?? p.valuePositiveInt;
  if (v !== undefined) return String(v);
  if (p.valueCoding?.code) return p.valueCoding.system ? `${p.valueCoding.system}|${p.valueCoding.code}` : p.valueCoding.code;
  return undefined;
}

/** Every value of a named parameter, query first then body. */
export function stringParams(req: OperationRequest, name: string): string[] {
  const out = [...(req.query[name] ?? [])];
  if (req.body?.resourceType === 'Parameters') {
    for (const p of (req.body as Parameters).parameter ?? []) {
      if (p.name !== name) continue;
      const v = primitive(p);
      if (v !== undefined) out.push(v);
    }
  }
  return out;
}

export function resourceParam(req: OperationRequest, name: string): Resource | undefined {
  if (req.body?.resourceType !== 'Parameters') return undefined;
  return (req.body as Parameters).parameter?.find((p) => p.name === name)?.resource;
}
