/**
 * fn over items one after another, results in order. Reads inside a write hook share one
 * database connection (the write's transaction): issuing them all at once only queues them in the
 * driver, which pg deprecates, and gains nothing.
 */
export async function inTurn<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) out.push(await fn(item));
  return out;
}
