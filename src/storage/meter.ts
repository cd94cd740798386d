import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { BlobTooLargeError } from './blob-store.js';

/**
 * A pass-through stream that counts bytes and hashes them (sha256) as they flow, and fails with
 * BlobTooLargeError the moment more than `maxBytes` have arrived, before passing the chunk on,
 * so a store never receives a byte past the limit. Both blob-store adapters pipe uploads through it.
 */
export class ByteMeter extends Transform {
  /** Bytes passed through so far. */
  bytes = 0;
  /** True once the source ended and every byte was passed on: `sha256` is then final. */
  finished = false;
  private readonly hash: Hash = createHash('sha256');
  private digest: string | undefined;

  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {
    super();
  }

  override _transform(chunk: Buffer | string, encoding: BufferEncoding, callback: TransformCallback): void {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
    if (this.bytes + buf.length > this.maxBytes) {
      callback(new BlobTooLargeError(this.maxBytes));
      return;
    }
    this.bytes += buf.length;
    this.hash.update(buf);
    callback(null, buf);
  }

  override _flush(callback: TransformCallback): void {
    this.digest = this.hash.digest('hex');
    this.finished = true;
    callback();
  }

  /** Hex sha256 of everything that passed. @throws if the source has not ended yet. */
  get sha256(): string {
    if (this.digest === undefined) throw new Error('ByteMeter: sha256 read before the stream ended');
    return this.digest;
  }
}
