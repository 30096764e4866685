export * from './db.ts';
export * from './migrations.ts';
export * from './indexer.ts';
export * from './access.ts';
export * from './repository.ts';
export * from './search.ts';
export * from './write.ts';
export * from './audit-queue.ts';
