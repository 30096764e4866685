declare module '@tic/fhir-profiles' {
  import type { Resource } from '@medplum/fhirtypes';
  export const profilesDir: string;
  export function loadConformanceResources(): Resource[];
  export function loadExamples(): Resource[];
}
