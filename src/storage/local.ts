import fs from 'node:fs/promises';
import path from 'node:path';
import type { BlobStore } from './blob-store.js';

const SAFE_NAME = /^[a-z0-9][a-z0-9.-]{1,62}$/;

/** Blob store on the local file system: a folder per bucket under `root`, for embedded mode. */
export class LocalBlobStore implements BlobStore {
  readonly kind = 'local' as const;
  constructor(private readonly root: string) {}

  private bucketDir(bucket: string): string {
    // Bucket names come from our own ids, but a path never leaves the root whatever it is given.
    if (!SAFE_NAME.test(bucket)) throw new Error(`invalid bucket name: ${bucket}`);
    return path.join(this.root, bucket);
  }

  async createBucket(bucket: string): Promise<void> {
    await fs.mkdir(this.bucketDir(bucket), { recursive: true });
  }

  async deleteBucket(bucket: string): Promise<void> {
    await fs.rm(this.bucketDir(bucket), { recursive: true, force: true });
  }

  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    const dir = this.bucketDir(bucket);
    const target = path.resolve(dir, prefix);
    if (!target.startsWith(dir + path.sep)) throw new Error(`prefix escapes bucket: ${prefix}`);
    let count = 0;
    try {
      const files = await fs.readdir(target, { recursive: true, withFileTypes: true });
      count = files.filter((f) => f.isFile()).length;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    await fs.rm(target, { recursive: true, force: true });
    return count;
  }

  async bucketExists(bucket: string): Promise<boolean> {
    return fs.stat(this.bucketDir(bucket)).then(
      (s) => s.isDirectory(),
      () => false,
    );
  }
}
