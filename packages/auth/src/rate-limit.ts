// Per-client token bucket. Each replica keeps its own buckets, so N replicas allow up to N times the
// rate in total; the reverse proxy can add a global limit where that matters.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { RequestContext } from '@tic/fhir';
import { tooManyRequests } from '@tic/fhir';

export interface RateLimitOptions {
  /** Sustained requests per second per client. */
  ratePerSecond: number;
  /** Requests a client may make at once after being idle. */
  burst: number;
  now?: () => number;
  /** Buckets kept before idle ones are dropped. Default 10000. */
  maxBuckets?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly o: Required<RateLimitOptions>;

  constructor(options: RateLimitOptions) {
    if (!(options.ratePerSecond > 0) || !(options.burst >= 1)) throw new Error('rate limit needs ratePerSecond > 0 and burst >= 1');
    this.o = { now: Date.now, maxBuckets: 10_000, ...options };
  }

  /** Takes one token; returns 0 when allowed, else the seconds to wait before retrying. */
  take(key: string): number {
    const now = this.o.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.o.maxBuckets) this.evict(now);
      b = { tokens: this.o.burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.o.burst, b.tokens + ((now - b.at) / 1000) * this.o.ratePerSecond);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.o.ratePerSecond));
  }

  private evict(now: number): void {
    // Drop buckets that would be full again (idle clients lose nothing), then the oldest if needed.
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.o.ratePerSecond >= this.o.burst) this.buckets.delete(k);
    }
    while (this.buckets.size >= this.o.maxBuckets) {
      const first = this.buckets.keys().next().value as string;
      this.buckets.delete(first);
    }
  }
}

/** Express middleware: 429 OperationOutcome with Retry-After when a client exceeds its rate. */
export function createRateLimit(options: RateLimitOptions): RequestHandler {
  const buckets = new TokenBuckets(options);
  return (req: Request, _res: Response, next: NextFunction) => {
    const ctx = (req as Request & { tic?: RequestContext }).tic;
    const key = ctx?.clientId ? `client:${ctx.clientId}` : `ip:${req.ip ?? 'unknown'}`;
    const wait = buckets.take(key);
    if (wait > 0) return next(tooManyRequests(wait));
    next();
  };
}
