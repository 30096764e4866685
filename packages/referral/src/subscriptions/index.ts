export * from './criteria.ts';
export * from './check.ts';
export * from './notify.ts';
