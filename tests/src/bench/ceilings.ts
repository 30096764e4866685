// The machine's ceilings, measured in the same run and at the same concurrency as the API:
// - HTTP: a bare node:http server (its own process) answering every request with a fixed JSON body;
// - PostgreSQL: raw INSERTs (autocommit, one row each) and primary-key SELECTs of the same JSON
//   with `pg`, one pool of `connections` clients, no HTTP and no FHIR work.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Measurement } from './measure.ts';
import { measure } from './measure.ts';
import { startBareServer } from './processes.ts';

export interface Ceilings {
  httpGet: Measurement;
  httpPost: Measurement;
  pgInsert: Measurement;
  pgRead: Measurement;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Runs `op` in `connections` concurrent loops for `seconds`; latencies from every completed op. */
async function loop(name: string, connections: number, seconds: number, op: (worker: number) => Promise<void>): Promise<Measurement> {
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const end = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async (_, worker) => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await op(worker);
          latencies.push(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { name, rps: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors, requests: latencies.length + errors, seconds: elapsed };
}

export async function measureHttpCeiling(options: { body: string; connections: number; seconds: number; warmupSeconds: number }): Promise<{ get: Measurement; post: Measurement }> {
  const server = await startBareServer(options.body);
  try {
    const run = { url: server.url, connections: options.connections, seconds: options.seconds, warmupSeconds: options.warmupSeconds };
    const get = await measure('bare node:http GET', { ...run, requests: [{ method: 'GET', path: '/x' }] });
    const post = await measure('bare node:http POST', { ...run, requests: [{ method: 'POST', path: '/x', headers: { 'content-type': 'application/fhir+json' }, body: options.body }] });
    return { get, post };
  } finally {
    await server.stop();
  }
}

export async function measurePgCeiling(options: { databaseUrl: string; body: string; connections: number; seconds: number; warmupSeconds: number }): Promise<{ insert: Measurement; read: Measurement }> {
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.connections });
  try {
    await pool.query('CREATE TABLE IF NOT EXISTS bench_raw (id text PRIMARY KEY, content text NOT NULL)');
    const ids: string[] = [];
    const insert = async () => {
      const id = randomUUID();
      await pool.query({ name: 'bench_insert', text: 'INSERT INTO bench_raw (id, content) VALUES ($1, $2)', values: [id, options.body] });
      ids.push(id);
    };
    await loop('warm-up', options.connections, options.warmupSeconds, insert);
    const inserted = await loop('pg INSERT (autocommit)', options.connections, options.seconds, insert);
    await pool.query('ANALYZE bench_raw');
    const read = async () => {
      const id = ids[Math.floor(Math.random() * ids.length)];
      const r = await pool.query({ name: 'bench_read', text: 'SELECT content FROM bench_raw WHERE id = $1', values: [id] });
      if (r.rows.length !== 1) throw new Error('row missing');
    };
    await loop('warm-up', options.connections, options.warmupSeconds, read);
    const readResult = await loop('pg SELECT by primary key', options.connections, options.seconds, read);
    await pool.query('DROP TABLE bench_raw');
    return { insert: inserted, read: readResult };
  } finally {
    await pool.end();
  }
}
