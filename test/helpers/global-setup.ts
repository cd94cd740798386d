import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import type { TestProject } from 'vitest/node';
import { applyMigrations } from '../../src/db/migrate.js';
import { PGLITE_EXTENSIONS } from '../../src/db/pglite-extensions.js';

declare module 'vitest' {
  export interface ProvidedContext {
    templatePath: string;
  }
}

/**
 * Runs the real migrations once into a PGlite and dumps its data dir; every test file then starts
 * from a copy (~0.5 s) instead of initdb + migrations (~5 s).
 */
export default async function setup(project: TestProject) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-template-'));
  const pg = await PGlite.create({ extensions: PGLITE_EXTENSIONS });
  await applyMigrations(new PrismaPGlite(pg));
  const dump = await pg.dumpDataDir('none');
  await pg.close();
  const file = path.join(dir, 'template.tar');
  await fs.writeFile(file, Buffer.from(await dump.arrayBuffer()));
  project.provide('templatePath', file);
  return async () => {
    await fs.rm(dir, { recursive: true, force: true });
  };
}
