// npm's postinstall: generate the Prisma client (src/generated) and the Pothos types, offline.
// The Prisma CLI is a devDependency: a production install (`npm ci --omit=dev`) has no CLI and needs
// no generation (dist/ carries the compiled client), so it is skipped there rather than failing.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

try {
  createRequire(import.meta.url).resolve('prisma/package.json');
} catch {
  console.log('postinstall: the Prisma CLI is not installed (a production install): nothing to generate, dist/ has the client');
  process.exit(0);
}
const run = spawnSync('npm', ['run', '-s', 'generate'], { stdio: 'inherit', shell: process.platform === 'win32' });
process.exit(run.status ?? 1);
