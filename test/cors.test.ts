import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startGateway, type TestGateway } from './helpers/app.js';
import { newVolume } from './helpers/entries.js';
import { ADMIN_KEY } from './helpers/http.js';

// CORS_ORIGINS lets browser pages on those origins call /v1 (and /blobs): a preflight is answered
// before authentication, and the answers expose the headers a browser tus client (Uppy) reads.

const APP = 'https://app.example.com';

/** A tus creation preflight as a browser sends it (no credentials). */
const preflight = (gw: TestGateway, url: string, origin: string) =>
  fetch(gw.url + url, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'tus-resumable,upload-length,upload-metadata,x-api-key',
    },
  });

describe('CORS_ORIGINS set', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ CORS_ORIGINS: `${APP}, http://localhost:5173` });
  });
  afterAll(() => gw?.stop());

  it('answers a tus preflight from an allowed origin without a key, and a browser upload can read the tus headers', async () => {
    const v = await newVolume(gw, 'org-cors');
    const uploads = `${v.volumeUrl}/uploads`;
    const pre = await preflight(gw, uploads, APP);
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe(APP);
    const allowed = (pre.headers.get('access-control-allow-headers') ?? '').toLowerCase();
    for (const h of ['tus-resumable', 'upload-length', 'upload-metadata', 'x-api-key']) expect(allowed).toContain(h);
    expect(pre.headers.get('access-control-allow-methods')).toContain('PATCH');

    const created = await fetch(gw.url + uploads, {
      method: 'POST',
      headers: {
        origin: APP,
        'x-api-key': ADMIN_KEY,
        'tus-resumable': '1.0.0',
        'upload-length': '5',
        'upload-metadata': `path ${Buffer.from('/cors.txt').toString('base64')}`,
      },
    });
    expect(created.status).toBe(201);
    expect(created.headers.get('access-control-allow-origin')).toBe(APP);
    const exposed = (created.headers.get('access-control-expose-headers') ?? '').toLowerCase();
    for (const h of ['location', 'upload-offset', 'upload-expires', 'etag', 'x-request-id']) expect(exposed).toContain(h);
  });

  it('gives other origins no CORS headers, and plain REST answers carry them for allowed ones', async () => {
    const other = await preflight(gw, '/v1/orgs/org-cors/workspaces', 'https://evil.example.net');
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const list = await fetch(`${gw.url}/v1/orgs/org-cors/workspaces`, {
      headers: { origin: 'http://localhost:5173', 'x-api-key': ADMIN_KEY },
    });
    expect(list.status).toBe(200);
    expect(list.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
  });

  it('covers the peer dialects too: their preflights, answers and error answers carry the origin', async () => {
    const env = randomUUID();
    for (const route of ['/api/v1/volumes', '/api/v1/volumes/some-id', '/v1/volumes', `/${env}/volume`, `/${env}/volume/some-id`]) {
      const pre = await fetch(gw.url + route, {
        method: 'OPTIONS',
        headers: {
          origin: APP,
          'access-control-request-method': 'PATCH',
          'access-control-request-headers': 'authorization,content-type,x-org-id',
        },
      });
      expect(pre.status, route).toBe(204);
      expect(pre.headers.get('access-control-allow-origin'), route).toBe(APP);
      expect((pre.headers.get('access-control-allow-headers') ?? '').toLowerCase(), route).toContain('x-org-id');
    }
    const listed = await fetch(`${gw.url}/api/v1/volumes`, { headers: { origin: APP, 'x-api-key': ADMIN_KEY, 'x-org-id': 'org-cors' } });
    expect(listed.status).toBe(200);
    expect(listed.headers.get('access-control-allow-origin')).toBe(APP);
    expect((listed.headers.get('access-control-expose-headers') ?? '').toLowerCase()).toContain('x-total-count');
    // The platform key names no organisation here: the dialect's 4xx is readable by the page too.
    const refused = await fetch(`${gw.url}/${env}/volume`, { headers: { origin: APP, 'x-api-key': ADMIN_KEY } });
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);
    expect(refused.headers.get('access-control-allow-origin')).toBe(APP);
    // Other origins still get nothing from a dialect.
    const other = await fetch(`${gw.url}/api/v1/volumes`, {
      headers: { origin: 'https://evil.example.net', 'x-api-key': ADMIN_KEY, 'x-org-id': 'org-cors' },
    });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS_ORIGINS unset (the default)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(() => gw?.stop());

  it('answers no cross-origin request with CORS headers', async () => {
    const pre = await preflight(gw, '/v1/orgs/org-cors/workspaces', APP);
    expect(pre.status).toBeLessThan(500);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
  });
});

it('refuses a CORS_ORIGINS entry that is not an origin, naming the variable', () => {
  expect(() => loadConfig({ NODE_ENV: 'test', CORS_ORIGINS: 'https://app.example.com/path' })).toThrow(/CORS_ORIGINS/);
  expect(loadConfig({ NODE_ENV: 'test', CORS_ORIGINS: '*' }).corsOrigins).toEqual(['*']);
});
