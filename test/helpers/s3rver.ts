import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnChild } from './child.js';

export interface S3rverHandle {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  /** The folder s3rver stores buckets in (removed by stop). */
  directory: string;
  /** Stops the process and removes its folder; safe to call twice. */
  stop(): Promise<void>;
}

/** s3rver's fixed credentials (it does not verify signatures, but the SDK must sign with something). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/**
 * Starts s3rver 3.7.1 in a child process under `--openssl-legacy-provider` (see STACK.md: without
 * it, truncated ListObjectsV2 pages answer 500) on a free port of 127.0.0.1, backed by a temp folder.
 */
export async function startS3rver(): Promise<S3rverHandle> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-s3rver-'));
  const script = path.join(import.meta.dirname, 's3rver-child.mjs');
  const child = spawnChild(process.execPath, ['--openssl-legacy-provider', script, directory], { stdin: 'pipe' });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.proc.exitCode === null && child.proc.signalCode === null) {
      child.proc.kill('SIGTERM');
      // A clean close normally takes milliseconds; never let a stuck child outlive the tests.
      const timer = setTimeout(() => child.proc.kill('SIGKILL'), 5_000);
      await child.exited;
      clearTimeout(timer);
    }
    await fs.rm(directory, { recursive: true, force: true });
  };
  try {
    const [line] = await child.waitForStdout(/^\{.*\}\n/m, 15_000);
    const { port } = JSON.parse(line) as { port: number };
    return { endpoint: `http://127.0.0.1:${port}`, directory, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
