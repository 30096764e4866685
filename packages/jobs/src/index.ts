export * from './queue.ts';
export * from './liveness.ts';
