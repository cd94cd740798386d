/** A key that no blob store accepts (a programming error: keys are built by the gateway). */
export class InvalidBlobKeyError extends Error {
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`invalid object key ${JSON.stringify(key)}: ${reason}`);
    this.name = 'InvalidBlobKeyError';
  }
}

/** S3's own limit on a key's UTF-8 length. */
const MAX_KEY_BYTES = 1024;
/** Most file systems' limit on one name, which a local key segment becomes. */
const MAX_SEGMENT_BYTES = 255;

/**
 * Checks the key rules both adapters share, so code written against one store works on the other:
 * `/`-separated segments, none empty, `.` or `..` (a local key is a relative path and must not leave
 * its bucket), no backslash or NUL, at most 255 bytes a segment and 1024 bytes in all.
 * @throws InvalidBlobKeyError
 */
export function assertBlobKey(key: string): void {
  if (typeof key !== 'string' || key === '') throw new InvalidBlobKeyError(String(key), 'empty');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new InvalidBlobKeyError(key, `longer than ${MAX_KEY_BYTES} bytes`);
  if (key.includes('\\') || key.includes('\0')) throw new InvalidBlobKeyError(key, 'contains a backslash or NUL');
  for (const segment of key.split('/')) {
    if (segment === '') throw new InvalidBlobKeyError(key, 'absolute, or has an empty segment');
    if (segment === '.' || segment === '..') throw new InvalidBlobKeyError(key, 'has a "." or ".." segment');
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES)
      throw new InvalidBlobKeyError(key, `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
}

/**
 * A byte range must be whole, non-negative numbers with `end` (inclusive) not before `start`;
 * HTTP callers parse and clamp `Range` headers before they get here.
 * @throws RangeError
 */
export function assertByteRange(range: { start: number; end?: number } | undefined): void {
  if (range === undefined) return;
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`invalid range start ${start}`);
  if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) throw new RangeError(`invalid range end ${end} (start ${start})`);
}
