// Runs the CLI as a user would (Node 24 type stripping) against a live server using the dev client.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { createAuth } from '../create-auth.ts';
import { appWith } from '../test-utils.ts';

const cli = join(__dirname, 'get-token.ts');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, NODE_OPTIONS: '' } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('get-token prints a working access token for the development client', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tic-cli-'));
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const auth = await createAuth({ mode: 'builtin', baseUrl: base, devDataDir: dir });
    const app = appWith(auth);
    server.on('request', app);
    const out = await run(['--base-url', base, '--data-dir', dir, '--scope', 'system/Task.rs']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const token = out.stdout.trim();
    const res = await request(app).get('/fhir/Task').set('Authorization', `Bearer ${token}`);
    expect(res.status).toBe(200);
    expect(res.body.context).toMatchObject({ clientId: 'tic-dev-client', scopes: ['system/Task.rs'] });

    const refused = await run(['--base-url', base, '--data-dir', dir, '--scope', 'patient/Task.rs']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('invalid_scope');
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  }
}, 30_000);
