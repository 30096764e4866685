export * from './outcomes.ts';
export * from './definitions.ts';
export * from './json.ts';
export type * from './module.ts';
export * from './validation.ts';
export * from './consent.ts';
