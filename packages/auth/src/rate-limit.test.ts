import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import request from 'supertest';
import { isOperationOutcomeError, statusForOutcome } from '@tic/fhir';
import { createRateLimit, TokenBuckets } from './rate-limit.ts';

test('token bucket: burst, then the sustained rate, with the wait to retry', () => {
  let now = 0;
  const b = new TokenBuckets({ ratePerSecond: 2, burst: 3, now: () => now });
  expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 0]);
  expect(b.take('a')).toBe(1);
  expect(b.take('b')).toBe(0); // other clients have their own bucket
  now += 500; // one token back at 2/s
  expect(b.take('a')).toBe(0);
  expect(b.take('a')).toBeGreaterThan(0);
  now += 10_000;
  expect([b.take('a'), b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 0, 1]);
});

test('slow rates give longer Retry-After', () => {
  const b = new TokenBuckets({ ratePerSecond: 0.1, burst: 1, now: () => 0 });
  expect(b.take('a')).toBe(0);
  expect(b.take('a')).toBe(10);
});

test('idle buckets are evicted when the limit of buckets is reached', () => {
  let now = 0;
  const b = new TokenBuckets({ ratePerSecond: 1, burst: 1, now: () => now, maxBuckets: 2 });
  b.take('a');
  b.take('b');
  now += 5000;
  expect(b.take('c')).toBe(0);
  expect(b.take('a')).toBe(0);
});

test('middleware answers 429 with Retry-After per client id', async () => {
  const app = express();
  app.use((req, _res, next) => {
    (req as Request & { tic?: object }).tic = { clientId: String(req.headers['x-client']) };
    next();
  });
  app.use(createRateLimit({ ratePerSecond: 1, burst: 2 }));
  app.get('/x', (_req, res) => {
    res.json({ ok: true });
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (!isOperationOutcomeError(err)) throw err;
    for (const [k, v] of Object.entries(err.headers ?? {})) res.set(k, v);
    res.status(statusForOutcome(err)).json(err.outcome);
  });
  expect((await request(app).get('/x').set('x-client', 'a')).status).toBe(200);
  expect((await request(app).get('/x').set('x-client', 'a')).status).toBe(200);
  const limited = await request(app).get('/x').set('x-client', 'a');
  expect(limited.status).toBe(429);
  expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect(limited.body.issue[0].code).toBe('throttled');
  expect((await request(app).get('/x').set('x-client', 'b')).status).toBe(200);
});
