import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from './helpers/app.js';

// GraphiQL is served with its assets inlined (no CDN: it works offline), with the Authorization
// header pre-filled from ?key=; where it is off, a browser opening /graphql gets a page saying how
// to turn it on instead of a CSRF error.

const html = { accept: 'text/html' };

describe('GraphiQL on', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ GRAPHIQL: 'true' });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('serves the IDE with every asset inlined: no script, style or font from another origin', async () => {
    const res = await fetch(`${gw.url}/graphql`, { headers: html });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    const page = await res.text();
    // (Booleans, not the 9 MB page, in a failure message.)
    expect(page.includes('<title>Volumes Gateway</title>')).toBe(true);
    expect(page.length).toBeGreaterThan(1_000_000);
    // Nothing loaded from elsewhere: no src= or href= to an http(s) URL, no CDN named.
    expect(/(?:src|href)\s*=\s*["']https?:\/\//.test(page)).toBe(false);
    expect(/unpkg\.com|jsdelivr|cdnjs/.test(page)).toBe(false);
    expect(page.includes('Bearer <your API key>')).toBe(true);
  });

  it('pre-fills the Authorization header from ?key=, and ignores one that is not key-shaped', async () => {
    const key = 'vga_abcdefghijklmnopqrstuvwxyz012345';
    const filled = await (await fetch(`${gw.url}/graphql?key=${key}`, { headers: html })).text();
    expect(filled.includes(`Bearer ${key}`)).toBe(true);
    const hostile = '</script><script>alert(1)</script>';
    const refused = await (await fetch(`${gw.url}/graphql?key=${encodeURIComponent(hostile)}`, { headers: html })).text();
    expect(refused.includes(hostile)).toBe(false);
    expect(refused.includes('Bearer <your API key>')).toBe(true);
  });
});

describe('GraphiQL off (production default)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ NODE_ENV: 'production' });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('a browser opening /graphql gets a page that says how to enable GraphiQL', async () => {
    const res = await fetch(`${gw.url}/graphql`, { headers: html });
    expect(res.status).toBe(200);
    const page = await res.text();
    expect(page).toContain('GRAPHIQL=true');
    expect(page).not.toContain('YogaGraphiQL');
  });

  it('GraphQL over GET and POST still works, and a non-browser GET still gets the CSRF answer', async () => {
    const get = await fetch(`${gw.url}/graphql?query=${encodeURIComponent('{ __typename }')}`, {
      headers: { accept: 'application/json', 'x-graphql-yoga-csrf': '1' },
    });
    expect(get.status).toBe(200);
    expect(await get.json()).toEqual({ data: { __typename: 'Query' } });
    expect((await gw.gql('{ __typename }')).body).toEqual({ data: { __typename: 'Query' } });
    const bare = await fetch(`${gw.url}/graphql`, { headers: { accept: 'application/json' } });
    expect(bare.status).toBeGreaterThanOrEqual(400);
    expect(bare.status).toBeLessThan(500);
  });
});
