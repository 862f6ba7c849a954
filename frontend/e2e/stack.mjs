// The real stack for the end-to-end tests: a fresh PostgreSQL database, the API (`pms serve`, which also
// serves the built app at /) on a free port, and users made with the `pms` command. Everything is
// stopped and dropped again by `stop()`.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const FRONTEND = path.resolve(here, '..');
export const ROOT = path.resolve(FRONTEND, '..');
const VENV_BIN = path.join(ROOT, '.venv', 'bin');
const ADMIN_URL = process.env.PMS_TEST_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const PASSWORD = 'Correct-Horse-Battery-Staple-9';

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function python(code, args = []) {
  const result = spawnSync(path.join(VENV_BIN, 'python'), ['-c', code, ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`python failed: ${result.stderr}`);
  return result.stdout;
}

const ADMIN_SQL = `
import asyncio, sys, asyncpg
async def main(url, sql):
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
asyncio.run(main(sys.argv[1], sys.argv[2]))
`;

export function pms(args, { input, env } = {}) {
  const result = spawnSync(path.join(VENV_BIN, 'pms'), args, { encoding: 'utf8', input, env: { ...process.env, ...env } });
  if (result.status !== 0) throw new Error(`pms ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

async function waitFor(url, child, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the API exited early (${child.exitCode})`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${url} did not answer in time`);
}

/** Start the stack. `users` are [{username, role}] made with the `pms` command (password PASSWORD). */
export async function startStack({ users = [], env: extraEnv = {} } = {}) {
  if (!existsSync(path.join(VENV_BIN, 'pms'))) throw new Error('run `make install` first (.venv/bin/pms is missing)');
  if (!existsSync(path.join(FRONTEND, 'dist', 'index.html'))) throw new Error('run `npm run build` first');
  const name = `pms_e2e_${randomBytes(6).toString('hex')}`;
  python(ADMIN_SQL, [ADMIN_URL, `CREATE DATABASE "${name}"`]);
  const databaseUrl = ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    REDIS_URL: process.env.PMS_E2E_REDIS_URL ?? 'redis://127.0.0.1:6379/9',
    PMS_SPA_DIR: path.join(FRONTEND, 'dist'),
    PMS_CLINIC_TIMEZONE: 'UTC',
    WEB_CONCURRENCY: '1',
    ...extraEnv,
  };
  let server;
  const stop = async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.kill('SIGKILL');
          resolve();
        }, 10_000);
        server.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    python(ADMIN_SQL, [ADMIN_URL, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`]);
  };
  try {
    pms(['migrate', '--database-url', databaseUrl]);
    server = spawn(path.join(VENV_BIN, 'pms'), ['serve', '--host', '127.0.0.1', '--port', String(port), '--workers', env.WEB_CONCURRENCY, '--no-migrate'], {
      env,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    await waitFor(`${baseUrl}/health`, server);
    // After the first start: the server seeds the shipped roles.
    for (const user of users) {
      pms(['user', 'create', '--username', user.username, '--role', user.role, '--password-stdin', '--database-url', databaseUrl], {
        input: `${PASSWORD}\n`,
      });
    }
  } catch (error) {
    await stop();
    throw error;
  }
  // What autovacuum does shortly after a bulk load in a running clinic: planner statistics, and the
  // visibility map and hint bits, which the first searches would otherwise set page by page (a two-word
  // name search, which reads all its matches, took 171 ms instead of ~15). Needed here because the
  // machine's own PostgreSQL runs with autovacuum off; the embedded and deployed ones run it.
  const analyze = () => python(ADMIN_SQL, [databaseUrl, 'VACUUM ANALYZE']);
  return { baseUrl, databaseUrl, stop, analyze };
}
