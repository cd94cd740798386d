/**
 * The local-file BlobStore adapter (embedded mode). One file (~480 lines) because it is one class
 * implementing BlobStore: atomic puts, ranged reads, signed download URLs and the upload sweep share
 * the same on-disk layout, as s3.ts does for S3.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Dirent } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  BlobNotFoundError,
  type BlobStore,
  type ByteRange,
  type GetResult,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  RangeNotSatisfiableError,
  type SignedPut,
  type SignedPutOptions,
  type SignedUrlOptions,
  type SweepResult,
} from './blob-store.js';
import { ByteMeter } from './meter.js';
import { assertBlobKey, assertByteRange, InvalidBlobKeyError } from './validate.js';

const SAFE_NAME = /^[a-z0-9][a-z0-9.-]{1,62}$/;
/** In-progress uploads, inside the bucket so the final rename never crosses file systems. */
const TMP_DIR = '.tmp';
/** Content types, at the same relative path as the object they describe. */
const META_DIR = '.meta';
/** Resumable (tus) uploads in progress (storage/resumable.ts). */
const UPLOADS_DIR = '.uploads';
const RESERVED = new Set([TMP_DIR, META_DIR, UPLOADS_DIR]);
/** Concurrent unlinks in deleteMany. */
const DELETE_CONCURRENCY = 16;

export interface LocalBlobStoreOptions {
  /** Folder holding one sub-folder per bucket. */
  root: string;
  /** The gateway's public origin (e.g. http://127.0.0.1:4000), read when a URL is signed: the port is known only once the server listens. */
  baseUrl: () => string;
  /** HMAC key for download URLs (at least 32 characters); every replica serving them needs the same one. */
  signingSecret: string;
}

/** What a verified download URL grants besides the object itself. */
export interface DownloadGrant {
  filename: string | undefined;
  contentType: string | undefined;
}

/**
 * An object opened for reading: `size` is that of the bytes `read` returns even if the key is
 * overwritten meanwhile (the open file outlives the rename). The type is read alongside, so an
 * overwrite racing the open can pair it with the other version's bytes.
 */
export interface OpenObject {
  size: number;
  contentType: string | undefined;
  /** A stream of the whole object or the (already clamped, inclusive) range; it closes the file when it ends or is destroyed. */
  read(range?: { start: number; end: number }): Readable;
  /** Closes the file without reading (HEAD, 416). Not needed after `read`. */
  close(): Promise<void>;
}

const isMissingPath = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

/**
 * Blob store on the local file system, for embedded mode: a folder per bucket under `root`, an
 * object per file (keys' `/` are sub-folders). Puts are atomic (temporary file, fsync, rename), so
 * readers see the old object or the whole new one. Downloads go through the gateway
 * (`createDownloadRoutes`) with HMAC-signed, expiring URLs.
 *
 * Because keys are paths, `a` and `a/b` cannot both exist (S3 allows it); keys whose first segment
 * is `.tmp` or `.meta` are reserved.
 */
export class LocalBlobStore implements BlobStore {
  readonly kind = 'local' as const;
  private readonly root: string;
  private readonly baseUrl: () => string;
  private readonly secret: string;

  constructor(opts: LocalBlobStoreOptions) {
    if (typeof opts.signingSecret !== 'string' || opts.signingSecret.length < 32) {
      throw new Error('LocalBlobStore: signingSecret must be at least 32 characters');
    }
    this.root = path.resolve(opts.root);
    this.baseUrl = opts.baseUrl;
    this.secret = opts.signingSecret;
  }

  private bucketDir(bucket: string): string {
    // Bucket names come from our own ids, but a path never leaves the root whatever it is given.
    if (!SAFE_NAME.test(bucket)) throw new Error(`invalid bucket name: ${bucket}`);
    return path.join(this.root, bucket);
  }

  /** The bucket's folder (validates the name). */
  bucketPath(bucket: string): string {
    return this.bucketDir(bucket);
  }

  /**
   * Makes a finished file inside the bucket's folder tree (a resumable upload in `.uploads/`) the
   * object at `key`, by rename: atomic, and no byte is copied.
   */
  async adopt(bucket: string, key: string, file: string, contentType?: string): Promise<void> {
    const dir = this.bucketDir(bucket);
    const objectFile = this.objectPath(bucket, key);
    const segments = key.split('/');
    if (!path.resolve(file).startsWith(dir + path.sep)) throw new Error('adopt: the file must be inside the bucket');
    await fs.open(file, 'r+').then(async (fh) => {
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    });
    if (contentType) {
      await fs.mkdir(path.join(dir, TMP_DIR), { recursive: true });
      const tmpMeta = path.join(dir, TMP_DIR, `${randomUUID()}.meta`);
      await fs.writeFile(tmpMeta, JSON.stringify({ contentType }), { flag: 'wx', flush: true });
      await renameInto(tmpMeta, dir, [META_DIR, ...segments]);
    }
    await renameInto(file, dir, segments);
    await fsyncDir(path.dirname(objectFile));
  }

  /** The object's file; segments are checked, so the result stays inside the bucket. */
  private objectPath(bucket: string, key: string, area?: typeof META_DIR): string {
    assertLocalKey(key);
    const dir = this.bucketDir(bucket);
    return area ? path.join(dir, area, ...key.split('/')) : path.join(dir, ...key.split('/'));
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
    const first = path.relative(dir, target).split(path.sep)[0] ?? '';
    if (RESERVED.has(first)) throw new Error(`prefix names a reserved folder: ${prefix}`);
    let count = 0;
    try {
      const files = await fs.readdir(target, { recursive: true, withFileTypes: true });
      count = files.filter((f) => f.isFile()).length;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    await fs.rm(target, { recursive: true, force: true });
    await fs.rm(path.join(dir, META_DIR, path.relative(dir, target)), { recursive: true, force: true });
    return count;
  }

  async bucketExists(bucket: string): Promise<boolean> {
    return fs.stat(this.bucketDir(bucket)).then(
      (s) => s.isDirectory(),
      () => false,
    );
  }

  async put(bucket: string, key: string, body: Readable, opts: PutOptions = {}): Promise<PutResult> {
    let dir: string;
    let file: string;
    let metaFile: string;
    try {
      dir = this.bucketDir(bucket);
      file = this.objectPath(bucket, key);
      metaFile = this.objectPath(bucket, key, META_DIR);
      // Not recursive: a put into a bucket that does not exist fails, as it does on S3.
      await fs.mkdir(path.join(dir, TMP_DIR)).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') throw new Error(`no bucket ${bucket}`);
        if (err.code !== 'EEXIST') throw err;
      });
    } catch (err) {
      body.destroy(); // whatever happens, the caller's stream is consumed or released
      throw err;
    }
    const segments = key.split('/');
    const tmpDir = path.join(dir, TMP_DIR);
    const tmp = path.join(tmpDir, randomUUID());
    const tmpMeta = `${tmp}.meta`;
    const meter = new ByteMeter(opts.maxBytes);
    try {
      const fh = await fs.open(tmp, 'wx');
      try {
        // flush: fsync before the stream closes the file, so the rename below publishes durable bytes.
        await pipeline(body, meter, fh.createWriteStream({ flush: true }));
      } finally {
        await fh.close(); // already closed by the stream unless it failed before taking the handle
      }
      // The type goes in place first: whoever sees the new bytes sees their type.
      if (opts.contentType) {
        await fs.writeFile(tmpMeta, JSON.stringify({ contentType: opts.contentType }), { flag: 'wx', flush: true });
        await renameInto(tmpMeta, dir, [META_DIR, ...segments]);
      } else {
        await unlinkIfFile(metaFile);
      }
      await renameInto(tmp, dir, segments);
      await fsyncDir(path.dirname(file));
    } catch (err) {
      body.destroy();
      await Promise.all([fs.rm(tmp, { force: true }), fs.rm(tmpMeta, { force: true })]);
      throw err;
    }
    return { size: meter.bytes, sha256: meter.sha256 };
  }

  /**
   * Removes the files under the bucket's `.tmp/` last modified before `olderThan`: data and type
   * sidecars of uploads cut off by a crash (a put that fails in-process removes its own). A live
   * upload's data file is written to with every chunk, so its mtime stays fresh while bytes flow.
   * `removed` counts uploads (`<id>` and `<id>.meta` are one), `bytes` the files' sizes.
   */
  async sweepIncompleteUploads(bucket: string, olderThan: Date): Promise<SweepResult> {
    const tmpDir = path.join(this.bucketDir(bucket), TMP_DIR);
    let entries: Dirent[];
    try {
      entries = await fs.readdir(tmpDir, { withFileTypes: true });
    } catch (err) {
      if (isMissingPath(err)) return { removed: 0, bytes: 0 };
      throw err;
    }
    const cutoff = olderThan.getTime();
    const uploads = new Set<string>();
    let bytes = 0;
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const file = path.join(tmpDir, entry.name);
      try {
        const stat = await fs.lstat(file);
        if (stat.mtimeMs >= cutoff) continue;
        await fs.unlink(file);
        uploads.add(entry.name.replace(/\.meta$/, ''));
        bytes += stat.size;
      } catch (err) {
        // Renamed into place or swept by another process meanwhile: not ours to count.
        if (isMissingPath(err)) continue;
        throw err;
      }
    }
    return { removed: uploads.size, bytes };
  }

  /**
   * Opens an object for reading, so its size and bytes belong together (used by `get` and the
   * download route). Callers must `read` or `close` it.
   * @throws BlobNotFoundError
   */
  async open(bucket: string, key: string): Promise<OpenObject> {
    const file = this.objectPath(bucket, key);
    let fh: FileHandle;
    try {
      fh = await fs.open(file, 'r');
    } catch (err) {
      if (isMissingPath(err)) throw new BlobNotFoundError(bucket, key);
      throw err;
    }
    try {
      const stat = await fh.stat();
      // A folder (the parent of other keys) is not an object.
      if (!stat.isFile()) throw new BlobNotFoundError(bucket, key);
      const contentType = await this.readContentType(bucket, key);
      return {
        size: stat.size,
        contentType,
        read: (range) => (range ? fh.createReadStream({ start: range.start, end: range.end }) : fh.createReadStream()),
        close: () => fh.close(),
      };
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async get(bucket: string, key: string, range?: ByteRange): Promise<GetResult> {
    assertByteRange(range);
    const obj = await this.open(bucket, key);
    if (!range) return { body: obj.read(), size: obj.size, contentLength: obj.size, contentType: obj.contentType };
    if (range.start >= obj.size) {
      await obj.close();
      throw new RangeNotSatisfiableError(obj.size);
    }
    const end = Math.min(range.end ?? obj.size - 1, obj.size - 1);
    return {
      body: obj.read({ start: range.start, end }),
      size: obj.size,
      contentLength: end - range.start + 1,
      contentType: obj.contentType,
      range: { start: range.start, end },
    };
  }

  async head(bucket: string, key: string): Promise<{ size: number; contentType: string | undefined } | null> {
    const file = this.objectPath(bucket, key);
    try {
      const stat = await fs.stat(file);
      if (!stat.isFile()) return null;
      return { size: stat.size, contentType: await this.readContentType(bucket, key) };
    } catch (err) {
      if (isMissingPath(err)) return null;
      throw err;
    }
  }

  private async readContentType(bucket: string, key: string): Promise<string | undefined> {
    try {
      const meta = JSON.parse(await fs.readFile(this.objectPath(bucket, key, META_DIR), 'utf8')) as { contentType?: unknown };
      return typeof meta.contentType === 'string' ? meta.contentType : undefined;
    } catch (err) {
      if (isMissingPath(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
      throw err;
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    const file = this.objectPath(bucket, key);
    const metaFile = this.objectPath(bucket, key, META_DIR);
    const dir = this.bucketDir(bucket);
    await unlinkIfFile(file);
    await unlinkIfFile(metaFile);
    // Folders emptied by the delete go too, or a bucket of short-lived keys fills with them.
    await pruneEmptyDirs(path.dirname(file), dir);
    await pruneEmptyDirs(path.dirname(metaFile), path.join(dir, META_DIR));
  }

  async deleteMany(bucket: string, keys: readonly string[]): Promise<void> {
    for (const key of keys) this.objectPath(bucket, key);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(DELETE_CONCURRENCY, keys.length) }, async () => {
        while (next < keys.length) await this.delete(bucket, keys[next++] as string);
      }),
    );
  }

  async *list(bucket: string, prefix: string): AsyncIterable<ObjectInfo> {
    const dir = this.bucketDir(bucket);
    // Start in the deepest folder the prefix names entirely; below it, every key matches.
    const slash = prefix.lastIndexOf('/');
    const folder = slash >= 0 ? prefix.slice(0, slash) : '';
    if (folder !== '') {
      try {
        assertLocalKey(folder);
      } catch {
        return; // no key can live under a folder that is not a valid key itself
      }
    }
    yield* walk(path.join(dir, ...(folder ? folder.split('/') : [])), folder ? `${folder}/` : '', prefix, folder === '');
  }

  async signedUrl(bucket: string, key: string, opts: SignedUrlOptions): Promise<string> {
    this.objectPath(bucket, key);
    if (!Number.isFinite(opts.expiresIn) || opts.expiresIn <= 0) throw new RangeError(`invalid expiresIn ${opts.expiresIn}`);
    const expires = Math.floor(Date.now() / 1000) + Math.ceil(opts.expiresIn);
    const fields: DownloadFields = {
      bucket,
      key,
      expires,
      filename: opts.filename || undefined,
      contentType: opts.contentType || undefined,
    };
    const query = new URLSearchParams({ expires: String(expires) });
    if (fields.filename) query.set('filename', fields.filename);
    if (fields.contentType) query.set('type', fields.contentType);
    query.set('sig', signLocalDownload(this.secret, fields));
    const base = this.baseUrl().replace(/\/+$/, '');
    return `${base}/blobs/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}?${query}`;
  }

  async signedPutUrl(bucket: string, key: string, opts: SignedPutOptions): Promise<SignedPut> {
    this.objectPath(bucket, key);
    if (!Number.isFinite(opts.expiresIn) || opts.expiresIn <= 0) throw new RangeError(`invalid expiresIn ${opts.expiresIn}`);
    const expires = Math.floor(Date.now() / 1000) + Math.ceil(opts.expiresIn);
    const grant: UploadGrant = { size: opts.size, contentType: opts.contentType };
    const query = new URLSearchParams({ expires: String(expires), size: String(opts.size), type: opts.contentType });
    query.set('sig', this.uploadSignature(bucket, key, expires, grant));
    const base = this.baseUrl().replace(/\/+$/, '');
    return {
      url: `${base}/blobs/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}?${query}`,
      headers: { 'Content-Type': opts.contentType, 'Content-Length': String(opts.size) },
    };
  }

  private uploadSignature(bucket: string, key: string, expires: number, g: UploadGrant): string {
    // A tag of its own: a download signature never verifies as an upload one, nor the reverse.
    return createHmac('sha256', this.secret)
      .update(JSON.stringify(['vg-upload-v1', bucket, key, expires, g.size, g.contentType]))
      .digest('base64url');
  }

  /** Checks an upload URL's query (`expires`, `size`, `type`, `sig`); null when tampered with or expired. */
  verifyUpload(bucket: string, key: string, query: URLSearchParams, now = Date.now()): UploadGrant | null {
    const expires = query.get('expires') ?? '';
    const size = query.get('size') ?? '';
    if (!/^\d{1,12}$/.test(expires) || !/^\d{1,16}$/.test(size)) return null;
    const grant: UploadGrant = { size: Number(size), contentType: query.get('type') ?? '' };
    const expected = Buffer.from(this.uploadSignature(bucket, key, Number(expires), grant), 'base64url');
    const sig = query.get('sig') ?? '';
    const given = Buffer.from(sig, 'base64url');
    const valid = given.length === expected.length && timingSafeEqual(given, expected) && given.toString('base64url') === sig;
    return valid && now < Number(expires) * 1000 ? grant : null;
  }

  /**
   * Checks a download URL's query (`expires`, `filename`, `type`, `sig`) for this bucket and key:
   * the signature in constant time, then the expiry. Null when tampered with or expired.
   */
  verifyDownload(bucket: string, key: string, query: URLSearchParams, now = Date.now()): DownloadGrant | null {
    const expires = query.get('expires') ?? '';
    if (!/^\d{1,12}$/.test(expires)) return null;
    const fields: DownloadFields = {
      bucket,
      key,
      expires: Number(expires),
      filename: query.get('filename') || undefined,
      contentType: query.get('type') || undefined,
    };
    if (!verifyLocalSignature(this.secret, fields, query.get('sig') ?? '', now)) return null;
    return { filename: fields.filename, contentType: fields.contentType };
  }
}

/** What a local upload URL allows: exactly this many bytes of this type. */
export interface UploadGrant {
  size: number;
  contentType: string;
}

/** What a local download URL signs. */
export interface DownloadFields {
  bucket: string;
  key: string;
  /** Unix seconds. */
  expires: number;
  filename: string | undefined;
  contentType: string | undefined;
}

function canonical(f: DownloadFields): string {
  // JSON keeps the fields apart whatever characters they hold (keys and names may contain anything
  // but NUL); the version tag lets the format change without old URLs verifying under new rules.
  return JSON.stringify(['vg-download-v1', f.bucket, f.key, f.expires, f.filename ?? '', f.contentType ?? '']);
}

/** The base64url HMAC-SHA256 of a download URL's fields. */
export function signLocalDownload(secret: string, fields: DownloadFields): string {
  return createHmac('sha256', secret).update(canonical(fields)).digest('base64url');
}

/**
 * True when `sig` is the signature of `fields` (compared in constant time) and `fields.expires`
 * has not passed at `now` (ms).
 */
export function verifyLocalSignature(secret: string, fields: DownloadFields, sig: string, now = Date.now()): boolean {
  const expected = createHmac('sha256', secret).update(canonical(fields)).digest();
  const given = Buffer.from(sig, 'base64url');
  // timingSafeEqual needs equal lengths; comparing against itself keeps the timing the same.
  const valid = given.length === expected.length ? timingSafeEqual(given, expected) : !timingSafeEqual(expected, expected);
  // Canonical base64url only: Buffer.from ignores stray characters, which would let a tampered
  // `sig` (extra or changed padding bits) still verify.
  return valid && given.toString('base64url') === sig && now < fields.expires * 1000;
}

/** The shared key rules plus the folders this store keeps for itself. */
function assertLocalKey(key: string): void {
  assertBlobKey(key);
  if (RESERVED.has(key.split('/')[0] as string)) throw new InvalidBlobKeyError(key, 'its first segment is reserved by the local store');
}

async function* walk(abs: string, keyPrefix: string, prefix: string, top: boolean): AsyncGenerator<ObjectInfo> {
  let dir: Awaited<ReturnType<typeof fs.opendir>>;
  try {
    dir = await fs.opendir(abs);
  } catch (err) {
    if (isMissingPath(err)) return;
    throw err;
  }
  // The prefix's last segment (the part after its last "/") only filters this first folder.
  const filter = keyPrefix.length < prefix.length;
  for await (const entry of dir) {
    if (top && RESERVED.has(entry.name)) continue;
    const key = keyPrefix + entry.name;
    if (filter && !key.startsWith(prefix)) continue;
    if (entry.isDirectory()) {
      yield* walk(path.join(abs, entry.name), `${key}/`, prefix, false);
    } else if (entry.isFile()) {
      const stat = await fs.stat(path.join(abs, entry.name)).catch((err) => {
        if (isMissingPath(err)) return undefined; // deleted while we listed
        throw err;
      });
      if (stat) yield { key, size: stat.size, lastModified: stat.mtime };
    }
  }
}

/**
 * Renames `from` to `base/…rel`, creating the folders in between on demand, one level at a time so
 * that a bucket deleted meanwhile is not brought back. Retries when a concurrent delete prunes an
 * emptied folder between our mkdir and rename.
 */
async function renameInto(from: string, base: string, rel: string[]): Promise<void> {
  const to = path.join(base, ...rel);
  for (let attempt = 1; ; attempt++) {
    try {
      await fs.rename(from, to);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw err;
    }
    let dir = base;
    for (const segment of rel.slice(0, -1)) {
      dir = path.join(dir, segment);
      await fs.mkdir(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
  }
}

/** Makes a rename durable: the new directory entry reaches the disk. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function unlinkIfFile(file: string): Promise<void> {
  try {
    await fs.unlink(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // EISDIR/EPERM: the key names a folder of other keys, which is no object.
    if (isMissingPath(err) || code === 'EISDIR' || code === 'EPERM') return;
    throw err;
  }
}

async function pruneEmptyDirs(from: string, stopAt: string): Promise<void> {
  for (let dir = from; dir.startsWith(stopAt + path.sep); dir = path.dirname(dir)) {
    try {
      await fs.rmdir(dir);
    } catch {
      return; // not empty (or gone): its parents are not empty either
    }
  }
}
