import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Readable } from 'node:stream';
import * as tus from 'tus-js-client';
import type { TestGateway } from './app.js';
import { waitFor } from './app.js';
import { ADMIN_KEY } from './http.js';
import { MiB } from './uploads.js';

/** What a tus upload ended with: the upload URL, and the error if it failed. */
export interface TusResult {
  url: string | null;
  error: (Error & { originalResponse?: tus.HttpResponse | null }) | null;
  /** The status and body of the response that failed it (the final PATCH's error, say). */
  status: number | null;
  body: any;
}

export interface TusOptions {
  key?: string;
  metadata?: Record<string, string>;
  headers?: Record<string, string>;
  chunkSize?: number;
  /** Called with the bytes acknowledged so far; return true to cut the connection there (abort), and the upload is resumed. */
  cutAt?: number[];
  uploadLengthDeferred?: boolean;
  /** Resume from this upload URL instead of creating one. */
  uploadUrl?: string;
  retryDelays?: number[] | null;
  /** Required when `data` is a stream (then `chunkSize` too, and no `cutAt`). */
  uploadSize?: number;
}

/**
 * Runs tus-js-client (as an app would) against the gateway: `endpoint` is the volume's uploads URL.
 * With `cutAt`, the upload is aborted (its socket destroyed mid-PATCH) as soon as progress passes
 * each offset, and started again from the same URL: tus-js-client asks for the offset (HEAD) and
 * resumes there.
 */
export function tusUpload(endpoint: string, data: Buffer | Readable, opts: TusOptions = {}): Promise<TusResult & { cuts: number }> {
  return new Promise((resolve) => {
    const cuts = [...(opts.cutAt ?? [])];
    let done = 0;
    let upload: tus.Upload;
    const finish = (r: TusResult) => resolve({ ...r, cuts: done });
    const options: tus.UploadOptions = {
      endpoint,
      ...(opts.uploadUrl ? { uploadUrl: opts.uploadUrl } : {}),
      metadata: opts.metadata ?? {},
      headers: { 'X-API-Key': opts.key ?? ADMIN_KEY, ...opts.headers },
      ...(opts.chunkSize ? { chunkSize: opts.chunkSize } : {}),
      ...(opts.uploadLengthDeferred ? { uploadLengthDeferred: true } : {}),
      ...(opts.uploadSize !== undefined ? { uploadSize: opts.uploadSize } : {}),
      retryDelays: opts.retryDelays === undefined ? null : opts.retryDelays,
      storeFingerprintForResuming: false,
      onProgress: (sent) => {
        if (cuts.length > 0 && sent >= (cuts[0] as number)) {
          cuts.shift();
          done += 1;
          void upload.abort().then(() => {
            // Resume from the same URL: HEAD, then PATCH from the stored offset.
            upload = new tus.Upload(data, { ...options, uploadUrl: upload.url });
            upload.start();
          });
        }
      },
      onSuccess: () => finish({ url: upload.url, error: null, status: null, body: null }),
      onError: (error) => {
        const res = (error as { originalResponse?: tus.HttpResponse | null }).originalResponse ?? null;
        let body: unknown = res?.getBody() ?? null;
        try {
          body = typeof body === 'string' ? JSON.parse(body) : body;
        } catch {}
        finish({ url: upload.url, error, status: res?.getStatus() ?? null, body });
      },
    };
    upload = new tus.Upload(data, options);
    upload.start();
  });
}

/** Random bytes: incompressible, so nothing upstream can shortcut them. */
export const randomData = (size: number) => randomBytes(size);

/**
 * Creates a tus upload of `data` in `v` and starts a PATCH on `gw` that sends its first MiB, then
 * stalls (a client whose connection hung), returning once part of it is stored. `ended()` is when
 * the gateway answered or reset it (0 while it runs); `stale` settles then.
 */
export async function stalledPatch(gw: TestGateway, v: { volumeUrl: string }, path: string, data: Buffer) {
  const created = await fetch(`${gw.url}${v.volumeUrl}/uploads`, {
    method: 'POST',
    headers: {
      'X-API-Key': ADMIN_KEY,
      'Tus-Resumable': '1.0.0',
      'Upload-Length': String(data.length),
      'Upload-Metadata': `path ${Buffer.from(path).toString('base64')}`,
    },
  });
  if (created.status !== 201) throw new Error(`tus creation answered ${created.status}: ${await created.text()}`);
  const location = new URL(created.headers.get('location') as string, gw.url).pathname;
  let ended = 0;
  const stale = new Promise<{ status: number; offset: number } | 'reset'>((resolve) => {
    const req = http.request(`${gw.url}${location}`, {
      method: 'PATCH',
      headers: {
        'X-API-Key': ADMIN_KEY,
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': '0',
        'Content-Type': 'application/offset+octet-stream',
        'Content-Length': String(data.length),
      },
    });
    req.on('response', (res) => {
      ended = Date.now();
      res.resume();
      resolve({ status: res.statusCode ?? 0, offset: Number(res.headers['upload-offset']) });
      req.destroy();
    });
    req.on('error', () => {
      ended ||= Date.now();
      resolve('reset');
    });
    req.write(data.subarray(0, MiB));
  });
  // It is under way: part of its first MiB is stored.
  await waitFor(async () => Number((await gw.call('GET', location)).body.bytes_received) > 0, 10_000);
  return { location, uploadId: location.split('/').pop() as string, stale, ended: () => ended };
}
