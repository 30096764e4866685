// Resource ids the server assigns: UUIDs in the version 7 layout (RFC 9562): the first 48 bits the
// creation time in milliseconds, the rest random (74 bits). Ids made later sort after earlier ones,
// so the btrees keyed by id (resource and resource_version primary keys, every sp_* (resource_type,
// id, code) index) take new entries at their right edge instead of at random pages: fewer pages
// touched per write, fewer full-page images after a checkpoint, hotter cache (docs/benchmarks.md,
// issue 5). The id shows when the resource was created, as its first version's meta.lastUpdated
// does to anyone who may read its history.
import { randomFillSync } from 'node:crypto';

const pool = Buffer.alloc(16 * 256);
let next = pool.length;

export function newResourceId(now = Date.now()): string {
  if (next === pool.length) {
    randomFillSync(pool);
    next = 0;
  }
  const b = pool.subarray(next, next + 16);
  next += 16;
  b.writeUIntBE(now, 0, 6);
  b[6] = (b[6] & 0x0f) | 0x70; // version 7
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
