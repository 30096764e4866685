import express from 'express';
import { pino } from 'pino';
import request from 'supertest';
import { PgDb } from '@tic/store';
import { fhirErrorHandler, isDatabaseUnavailable } from './errors.ts';

function appThrowing(fn: () => Promise<unknown>) {
  const app = express();
  app.get('/x', async () => {
    await fn();
  });
  app.use(fhirErrorHandler(pino({ level: 'silent' })));
  return app;
}

describe('errors the database causes', () => {
  it('PostgreSQL out of connections or shutting down answers 503 transient with Retry-After, not 500', async () => {
    for (const code of ['53300', '57P03', '08006']) {
      const res = await request(appThrowing(async () => Promise.reject(Object.assign(new Error('sorry, too many clients already'), { code })))).get('/x');
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.body).toMatchObject({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'transient' }] });
      expect(JSON.stringify(res.body)).not.toContain('too many clients');
    }
  });

  it('a refused connection (nothing listening) is 503 too', async () => {
    const db = new PgDb('postgres://postgres@127.0.0.1:9/none', 1);
    try {
      const res = await request(appThrowing(() => db.query('SELECT 1'))).get('/x');
      expect(res.status).toBe(503);
    } finally {
      await db.close();
    }
  });

  it('other errors stay a generic 500', async () => {
    expect(isDatabaseUnavailable(Object.assign(new Error('x'), { code: '23505' }))).toBe(false);
    expect(isDatabaseUnavailable(new TypeError('x'))).toBe(false);
    const res = await request(appThrowing(async () => Promise.reject(new TypeError('boom')))).get('/x');
    expect(res.status).toBe(500);
    expect(JSON.stringify(res.body)).not.toContain('boom');
  });
});
