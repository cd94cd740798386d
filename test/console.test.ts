import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createConsoleRoutes } from '../src/http/console.js';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { request as rawRequest } from './helpers/http.js';

const CHROMIUM = '/usr/bin/chromium';

/**
 * The web console (console/, served at /console) in headless Chromium against a real gateway: real
 * HTTP, real PGlite, graphql-ws from the browser. The console is built here with Vite into a temp
 * folder the gateway is pointed at (CONSOLE_DIR), since `npm test` does not run `npm run build`.
 * UPDATE_CONSOLE_SCREENSHOTS=1 rewrites docs/console/*.png from this run.
 */
const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SHOTS = process.env.UPDATE_CONSOLE_SCREENSHOTS === '1' ? path.join(ROOT, 'docs/console') : undefined;
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let tmp: string;
let outDir: string;
let gw: TestGateway;
let context: BrowserContext;
let page: Page;
/** Every URL the browser asked for, and every error it logged (CSP violations included). */
const requested: string[] = [];
const browserErrors: string[] = [];
/** The gateway's log lines (JSON), to show no key ever reaches them. */
const logs: string[] = [];
/** What the test built through the UI and the API, shared by the steps below (they run in order). */
const state = { workspaceId: '', volumeId: '', org: 'console-org' };

async function gql(query: string, variables: Record<string, unknown> = {}) {
  const res = await gw.gql(query, variables);
  if (res.body.errors) throw new Error(JSON.stringify(res.body.errors));
  return res.body.data;
}

async function shot(name: string) {
  if (SHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/**
 * Text whose contrast with its background is below WCAG AA (4.5:1, or 3:1 for large text), as the
 * browser computed the styles: every visible text node of the page, disabled controls aside.
 */
function lowContrast(p: Page): Promise<string[]> {
  return p.evaluate(() => {
    type Rgba = { r: number; g: number; b: number; a: number };
    const parse = (c: string): Rgba | null => {
      const m = /rgba?\(([^)]+)\)/.exec(c);
      if (!m) return null;
      const [r = 0, g = 0, b = 0, a = 1] = m[1]!
        .split(/[\s,/]+/)
        .filter(Boolean)
        .map(Number);
      return { r, g, b, a };
    };
    const channel = (v: number) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    };
    const luminance = (c: Rgba) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
    const background = (el: Element | null): Rgba => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0) return c;
      }
      return { r: 255, g: 255, b: 255, a: 1 };
    };
    const problems: string[] = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || !n.textContent?.trim() || el.closest('[disabled], .sr-only, option, noscript, meter, progress')) continue;
      const style = getComputedStyle(el);
      if (style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
      const fg = parse(style.color);
      if (!fg) continue;
      const [l1, l2] = [luminance(fg), luminance(background(el))];
      const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      const size = Number.parseFloat(style.fontSize);
      const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
      if (ratio < (large ? 3 : 4.5))
        problems.push(`${el.tagName.toLowerCase()}.${el.className} "${n.textContent.trim().slice(0, 30)}": ${ratio.toFixed(2)}`);
    }
    return problems;
  });
}

/** The console's own links, as a user clicks them. */
const link = (name: string | RegExp) => page.getByRole('link', { name, exact: typeof name === 'string' });

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-console-'));
  outDir = path.join(tmp, 'console');
  await exec(
    process.execPath,
    [
      path.join(ROOT, 'node_modules/vite/bin/vite.js'),
      'build',
      '--config',
      'console/vite.config.ts',
      '--outDir',
      outDir,
      '--emptyOutDir',
      '--logLevel',
      'warn',
    ],
    { cwd: ROOT },
  );
  gw = await startGateway({ CONSOLE_DIR: outDir, LOG_LEVEL: 'info' }, { logs });
  // A system package, not an npm one: say so rather than fail with playwright's launch error.
  await fs.access(CHROMIUM).catch(() => {
    throw new Error(`the console test drives Debian's chromium at ${CHROMIUM}: apt-get install chromium (.ci/run installs it)`);
  });
  context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 860 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  page.on('request', (r) => requested.push(r.url()));
  page.on('pageerror', (e) => browserErrors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') browserErrors.push(`console: ${m.text()}`);
  });
}, 90_000);

afterAll(async () => {
  await context?.close();
  await gw?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('serving /console', () => {
  it('answers index.html for the console and its client routes, with a strict CSP; hashed assets cached for good', async () => {
    for (const route of ['/console', '/console/', '/console/v/some-id', '/console/search?x=1']) {
      const res = await rawRequest(gw.url, 'GET', route, { key: null });
      expect(res.status, route).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['cache-control']).toBe('no-cache');
      expect(res.body).toContain('<div id="app">');
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toMatch(/connect-src 'self' ws:\/\/127\.0\.0\.1:\d+ wss:\/\/127\.0\.0\.1:\d+/);
      expect(csp).toContain("frame-ancestors 'none'");
    }
    const index = (await rawRequest(gw.url, 'GET', '/console', { key: null })).body as string;
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(index)?.[1];
    expect(script).toBeDefined();
    const js = await rawRequest(gw.url, 'GET', script!, { key: null });
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    // Nothing from a CDN: every script and stylesheet comes from /console itself.
    expect(index).not.toMatch(/(src|href)="https?:/);
    const icon = await rawRequest(gw.url, 'GET', '/console/favicon.svg', { key: null });
    expect(icon.headers['content-type']).toBe('image/svg+xml');
  });

  it('never leaves the build folder, and 404s what it does not have', async () => {
    await fs.writeFile(path.join(tmp, 'secret.txt'), 'not for you');
    for (const route of [
      '/console/assets/../../secret.txt',
      '/console/assets/..%2f..%2fsecret.txt',
      '/console/assets/%2e%2e/%2e%2e/secret.txt',
      '/console/..%2fsecret.txt',
      '/console/assets/missing-abc.js',
      '/console/nothing.png',
      '/console/assets',
      '/console/assets/%ZZ.js',
      '/console/assets/.hidden',
    ]) {
      const res = await rawRequest(gw.url, 'GET', route, { key: null });
      expect([404], `${route}: ${res.status}`).toContain(res.status);
      expect(String(res.body)).not.toContain('not for you');
    }
    // Malformed escapes are client routes like any other: the page, never a 500.
    expect((await rawRequest(gw.url, 'GET', '/console/%ZZ/%00', { key: null })).status).toBe(200);
    const head = await rawRequest(gw.url, 'HEAD', '/console', { key: null });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    // Other methods are not the console's.
    expect((await rawRequest(gw.url, 'POST', '/console', { key: null })).status).toBe(404);
  });

  it('says to run `npm run build` when there is no build, and CONSOLE=false turns it off', async () => {
    const routes = createConsoleRoutes({ dir: path.join(tmp, 'no-build-here') });
    for (const route of ['/console', '/console/assets/index-x.js']) {
      const res = await routes.request(route);
      expect(res.status).toBe(503);
      expect(await res.text()).toContain('npm run build');
    }
    expect(loadConfig({}).console).toEqual({ enabled: true, dir: undefined });
    expect(loadConfig({ NODE_ENV: 'development' }).console.enabled).toBe(true);
    expect(loadConfig({ CONSOLE: 'false' }).console.enabled).toBe(false);
    expect(() => loadConfig({ CONSOLE: 'maybe' })).toThrow(/CONSOLE/);
    const off = await startGateway({ CONSOLE: 'false', CONSOLE_DIR: outDir });
    try {
      expect((await rawRequest(off.url, 'GET', '/console', { key: null })).status).toBe(404);
    } finally {
      await off.stop();
    }
  });

  it('keeps its committed GraphQL types in step with schema.graphql', async () => {
    const fresh = path.join(tmp, 'graphql-env.d.ts');
    await exec(
      process.execPath,
      [path.join(ROOT, 'node_modules/gql.tada/bin/cli.js'), 'generate', 'output', '--tsconfig', 'console/tsconfig.json', '--output', fresh],
      {
        cwd: ROOT,
      },
    );
    const committed = await fs.readFile(path.join(ROOT, 'console/src/graphql-env.d.ts'), 'utf8');
    expect(committed, 'console/src/graphql-env.d.ts is stale: run `npm run console:generate`').toBe(await fs.readFile(fresh, 'utf8'));
  });
});

describe('the console in Chromium', () => {
  it('refuses a wrong key with a message, then signs in with the platform key and an organisation', async () => {
    await page.goto(`${gw.url}/console`);
    await page.getByLabel('API key').fill('vgk_not-a-real-key-000000000000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page
      .getByRole('alert')
      .filter({ hasText: /UNAUTHENTICATED|invalid|API key/i })
      .waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await shot('sign-in');

    await page.getByLabel('API key').fill(ADMIN_KEY);
    await page.getByLabel(/^Organisation/).fill(state.org);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: /Workspaces/ }).waitFor();
    await page.getByText('No workspaces yet').waitFor();
  });

  it('creates a workspace and a volume, naming the field the API refuses', async () => {
    const form = page.getByRole('form', { name: 'Create a workspace' });
    await form.getByLabel('Name').fill('Research');
    await form.getByRole('button', { name: 'Create workspace' }).click();
    await page.getByRole('heading', { name: 'Research' }).waitFor();
    state.workspaceId = /\/w\/([^/?]+)/.exec(page.url())![1]!;
    await page.getByText('No volumes in this workspace yet').waitFor();

    // A refused input: the message names the field, the input is marked.
    const create = page.getByRole('form', { name: 'Create a volume' });
    await create.getByLabel('Name').fill('notes');
    await create.getByLabel('Entry quota').fill('-5');
    await create.getByRole('button', { name: 'Create volume' }).click();
    const alert = create.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toMatch(/maxFileCount/);
    expect(await create.getByLabel('Entry quota').getAttribute('aria-invalid')).toBe('true');

    await create.getByLabel('Entry quota').fill('20000');
    await create.getByRole('button', { name: 'Create volume' }).click();
    await page.getByRole('heading', { name: /^notes/ }).waitFor();
    state.volumeId = /\/v\/([^/?]+)/.exec(page.url())![1]!;
    await page.getByText('This folder is empty').waitFor();
  });

  it('uploads a dropped file with progress, lists it and shows it', async () => {
    await page.getByText('Live: changes by others appear here').waitFor();
    const text = '# Field notes\n\nThe zebracorn migrates north in spring.\n';
    const dataTransfer = await page.evaluateHandle((body) => {
      const dt = new DataTransfer();
      dt.items.add(new File([body], 'zebra.md', { type: 'text/markdown' }));
      return dt;
    }, text);
    await page.dispatchEvent('section.dropzone', 'drop', { dataTransfer });
    await page.locator('.uploads li', { hasText: 'zebra.md' }).getByText('uploaded').waitFor();
    expect(await page.locator('.uploads progress').evaluate((p: HTMLProgressElement) => p.value)).toBe(100);
    const row = page.locator('tr[data-path="/zebra.md"]');
    await row.waitFor();
    expect(await row.textContent()).toContain(`${Buffer.byteLength(text)} B`);
    // The volume's usage above the list follows the write.
    await page
      .locator('.volume-facts')
      .getByText(`${Buffer.byteLength(text)} B (no limit)`)
      .waitFor();
    await page.locator('.volume-facts').getByRole('meter', { name: 'Entries: 1 of 20,000' }).waitFor();
    await shot('folder');

    await row.getByRole('link', { name: 'zebra.md' }).click();
    await page.getByRole('heading', { name: '/zebra.md' }).waitFor();
    await page.getByRole('link', { name: 'Download zebra.md' }).waitFor();
    const href = await page.getByRole('link', { name: 'Download zebra.md' }).getAttribute('href');
    const download = await fetch(href!);
    expect(await download.text()).toBe(text);
  });

  it('pretty-prints JSON content, and moves and deletes an entry', async () => {
    await gql(
      'mutation($v: ID!) { writeEntry(volumeId: $v, path: "/docs/config.json", input: { content: { model: "hash", dims: [384, 1024] }, tags: ["cfg"], ttlSeconds: 3600 }) { created } }',
      { v: state.volumeId },
    );
    await page.goto(`${gw.url}/console/v/${state.volumeId}/entry?path=${encodeURIComponent('/docs/config.json')}`);
    const pre = page.locator('pre.content');
    await pre.waitFor();
    // Pretty-printed (Postgres' jsonb orders keys its own way, so compare values, then the layout).
    const shown = (await pre.textContent())!;
    expect(JSON.parse(shown)).toEqual({ model: 'hash', dims: [384, 1024] });
    expect(shown).toBe(JSON.stringify(JSON.parse(shown), null, 2));
    expect(shown).toContain('\n  "model": "hash"');
    await page.getByText(/expires in 5\d min/).waitFor();
    await shot('entry');

    await page.getByLabel('New path').fill('/docs/settings.json');
    await page.getByRole('button', { name: 'Move' }).click();
    await page.getByRole('heading', { name: '/docs/settings.json' }).waitFor();
    await page.getByRole('button', { name: 'Delete entry' }).click();
    await page.getByRole('button', { name: 'Yes, delete' }).click();
    await page.getByText('This folder is empty').waitFor();
    expect(page.url()).toContain(`path=${encodeURIComponent('/docs/')}`);
    const gone = await gql(
      'query($v: ID!) { volume(id: $v) { a: entry(path: "/docs/config.json") { id } b: entry(path: "/docs/settings.json") { id } } }',
      {
        v: state.volumeId,
      },
    );
    expect(gone.volume).toMatchObject({ a: null, b: null });
  });

  it('searches one volume and the whole workspace, and links the hit to its entry', async () => {
    // Indexing runs after the write; the hit exists once the entry is indexed.
    await waitFor(async () => {
      const d = await gql('query($v: ID!) { volume(id: $v) { entry(path: "/zebra.md") { isIndexed } } }', { v: state.volumeId });
      return d.volume.entry?.isIndexed;
    }, 30_000);
    await link('Search').first().click();
    await page.getByRole('heading', { name: 'Search' }).waitFor();
    await page.getByLabel('Volume', { exact: true }).selectOption({ label: 'notes' });
    await page.getByLabel('Query').fill('zebracorn spring');
    await page.getByRole('button', { name: 'Search' }).click();
    const hit = page.locator('.hit', { hasText: '/zebra.md' });
    await hit.waitFor();
    expect(await hit.locator('mark').allTextContents()).toEqual(expect.arrayContaining(['zebracorn']));
    expect(await hit.locator('.score').textContent()).toMatch(/score \d\.\d{3}/);
    await shot('search');

    await page.getByLabel('Every volume an app can read (searchAll)').check();
    await page.getByLabel('Mode').selectOption('keyword');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('.hit', { hasText: '/zebra.md' }).getByText('in notes').waitFor();

    // As an app: only what its mounts reach. "reader-app" reads everything, "nobody" has no mount.
    const { createMount } = await gql(
      'mutation($v: ID!) { createMount(volumeId: $v, input: { appId: "reader-app", pathPattern: "/**" }) { id } }',
      {
        v: state.volumeId,
      },
    );
    await page.getByLabel('As app').fill('reader-app');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('heading', { name: /1 hit for/ }).waitFor();
    await page.getByLabel('As app').fill('nobody');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('heading', { name: /0 hits for/ }).waitFor();
    await page.getByText('Nothing matched').waitFor();
    await page.getByLabel('As app').fill('');
    await gql('mutation($id: ID!) { deleteMount(id: $id) { id } }', { id: createMount.id });

    // A refused argument names it.
    await page.getByLabel('Top k').fill('500');
    await page.getByRole('button', { name: 'Search' }).click();
    await page
      .getByRole('alert')
      .filter({ hasText: /top_?k/i })
      .waitFor();
    await page.getByLabel('Top k').fill('10');

    // Filters are sent: a path prefix nothing lives under finds nothing; bad metadata JSON is named.
    await page.locator('summary', { hasText: 'Filters' }).click();
    await page.getByLabel('Path prefix').fill('/nowhere/');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('heading', { name: /0 hits for/ }).waitFor();
    await page.getByLabel('Path prefix').fill('');
    await page.getByLabel(/^Metadata/).fill('{not json');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('alert').filter({ hasText: 'filters.metadata' }).waitFor();
    expect(await page.getByLabel(/^Metadata/).getAttribute('aria-invalid')).toBe('true');
    await page.getByLabel(/^Metadata/).fill('');

    await page
      .getByLabel('Every volume an app can read (searchAll)')
      .uncheck()
      .catch(() => undefined);
    await page.getByLabel('One volume').check();
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('.hit').getByRole('link', { name: '/zebra.md' }).click();
    await page.getByRole('heading', { name: '/zebra.md' }).waitFor();
  });

  it('starts a reindex and follows its bar to 100 % over the subscription', async () => {
    // Enough entries for several batches (16 entries each), so the bar has somewhere to go.
    for (let i = 0; i < 40; i++) {
      await gql(
        'mutation($v: ID!, $p: String!) { writeEntry(volumeId: $v, path: $p, input: { contentText: "reindex me please" }) { created } }',
        {
          v: state.volumeId,
          p: `/bulk/n${String(i).padStart(2, '0')}.txt`,
        },
      );
    }
    await page.goto(`${gw.url}/console/v/${state.volumeId}?tab=index`);
    await page.getByRole('heading', { name: 'Reindex' }).waitFor();
    const percent = page.getByTestId('reindex-percent');
    // Every value the bar shows, in order (recorded in the page as it renders).
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { seen: string[] }).seen = seen;
      new MutationObserver(() => {
        const t = document.querySelector('[data-testid="reindex-percent"]')?.textContent;
        if (t && seen.at(-1) !== t) seen.push(t);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await page.getByRole('button', { name: 'Start reindex' }).click();
    await page.locator('.reindex .badge-completed').waitFor({ timeout: 60_000 });
    expect(await percent.textContent()).toBe('100 %');
    expect(await page.locator('.reindex progress').evaluate((p: HTMLProgressElement) => p.value)).toBe(100);
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    const numbers = seen.map((s) => Number.parseInt(s, 10));
    expect(numbers.at(-1)).toBe(100);
    expect([...numbers].sort((a, b) => a - b)).toEqual(numbers);
    // It moved: at least the queued 0 % and the final 100 % (on an idle machine, each batch of 16 between).
    expect(numbers.length).toBeGreaterThanOrEqual(2);
    expect(numbers[0]).toBeLessThan(100);
    expect(await page.getByText(/41 of 41 entries/).count()).toBe(1);
    await shot('reindex');
    // The volume header follows: the run is over.
    await page.locator('.volume-facts .badge-completed').waitFor();
  });

  it("shows another client's writes live in the open folder", async () => {
    await page.goto(`${gw.url}/console/v/${state.volumeId}?path=${encodeURIComponent('/inbox/')}`);
    await page.getByText('This folder is empty').waitFor();
    await page.getByText('Live: changes by others appear here').waitFor();
    // The subscription reaches the gateway a moment after the socket is up; the list never polls,
    // so a row appearing can only come from entryChanged. Write until one shows (each write is a new version).
    const row = page.locator('tr[data-path="/inbox/from-agent.md"]');
    for (let attempt = 1; ; attempt++) {
      await gql(
        'mutation($v: ID!) { writeEntry(volumeId: $v, path: "/inbox/from-agent.md", input: { contentText: "written elsewhere", tags: ["agent"] }) { created } }',
        {
          v: state.volumeId,
        },
      );
      const shown = await row.waitFor({ timeout: 3000 }).then(
        () => true,
        () => false,
      );
      if (shown) break;
      if (attempt >= 5) throw new Error('the entry never appeared live');
    }
    expect(await row.textContent()).toContain('agent');
    // A deeper write shows its folder; a delete removes the row, all without reloading.
    await gql('mutation($v: ID!) { writeEntry(volumeId: $v, path: "/inbox/2026/deep.md", input: { contentText: "x" }) { created } }', {
      v: state.volumeId,
    });
    await page.getByRole('link', { name: '2026/' }).waitFor();
    await gql('mutation($v: ID!) { deleteEntry(volumeId: $v, path: "/inbox/from-agent.md") { id } }', { v: state.volumeId });
    await row.waitFor({ state: 'detached' });
  });

  it('lists mounts, locks and keys as tables with create and revoke', async () => {
    await page.goto(`${gw.url}/console/v/${state.volumeId}?tab=mounts`);
    await page.getByText('No mounts').waitFor();
    const mountForm = page.getByRole('form', { name: 'Create a mount' });
    await mountForm.getByLabel('App id').fill('summariser');
    await mountForm.getByLabel('Path pattern').fill('/notes/**');
    await mountForm.getByLabel('Access').selectOption('write');
    await mountForm.getByRole('button', { name: 'Create mount' }).click();
    await page.getByRole('cell', { name: '/notes/**', exact: true }).waitFor();
    await shot('mounts');
    await page.getByRole('button', { name: 'Revoke the mount of summariser on /notes/**' }).click();
    await page.getByText('No mounts').waitFor();

    await link('Locks').click();
    await page.getByText('No live locks').waitFor();
    const lockForm = page.getByRole('form', { name: 'Acquire a lock' });
    await lockForm.getByLabel('Partition').fill('/reports/');
    await lockForm.getByLabel('Holder app id').fill('writer');
    await lockForm.getByLabel('TTL (seconds)').fill('600');
    await lockForm.getByRole('button', { name: 'Acquire lock' }).click();
    const lockRow = page.getByRole('row', { name: /\/reports\// });
    await lockRow.waitFor();
    expect(await lockRow.textContent()).toMatch(/writer.*(9|10) min \d+ s/);
    // Another holder's lock arrives through lockEvents.
    await gql('mutation($v: ID!) { acquireLock(volumeId: $v, input: { partition: "nightly", appId: "cron", ttlSeconds: 120 }) { id } }', {
      v: state.volumeId,
    });
    await page.getByRole('row', { name: /nightly/ }).waitFor();
    await shot('locks');
    await page.getByRole('button', { name: 'Release the lock on /reports/' }).click();
    await lockRow.waitFor({ state: 'detached' });

    await link('API keys').click();
    await page.getByText('No API keys in this organisation yet').waitFor();
    const keyForm = page.getByRole('form', { name: 'Create an API key' });
    await keyForm.getByLabel('Name').fill('reader');
    await keyForm.getByRole('button', { name: 'Create key' }).click();
    const secret = await page.locator('.secret code').textContent();
    expect(secret).toMatch(/^vgk_/);
    const keyRow = page.getByRole('row', { name: /reader/ });
    await keyRow.waitFor();
    expect(await keyRow.textContent()).toContain('volumes:read, entries:read, search');
    // The secret is shown once: "Done" puts it away for good (and keeps it out of the screenshot).
    await page.getByRole('button', { name: 'Done' }).click();
    await page.locator('.secret').waitFor({ state: 'detached' });
    expect(await page.getByText(secret!).count()).toBe(0);
    await shot('keys');
    await page.getByRole('button', { name: 'Revoke the key reader' }).click();
    await keyRow.getByText(/^revoked/).waitFor();
    // Revoked for real.
    expect((await gw.gql('{ viewer { kind } }', {}, secret!)).body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it('opens a folder of 10,000 entries with one page, and pages on', async () => {
    // Seeded in one statement (10,000 writes through the API would take minutes here); the
    // console reads them through the API like any other entries.
    await gw.app.database.prisma.$executeRawUnsafe(
      `INSERT INTO entries (id, volume_id, path, content_type, content_text, size_bytes, updated_at)
       SELECT gen_random_uuid()::text, $1, '/big/e' || lpad(i::text, 5, '0') || '.txt', 'text', 'x', 1, now()
       FROM generate_series(1, 10000) AS i`,
      state.volumeId,
    );
    await gw.app.database.prisma.$executeRawUnsafe(
      'UPDATE volumes SET entry_count = entry_count + 10000, used_bytes = used_bytes + 10000 WHERE id = $1',
      state.volumeId,
    );
    const started = Date.now();
    await page.goto(`${gw.url}/console/v/${state.volumeId}?path=${encodeURIComponent('/big/')}`);
    await page.locator('tr[data-path="/big/e00100.txt"]').waitFor();
    const elapsed = Date.now() - started;
    expect(await page.locator('table.entries tbody tr').count()).toBe(100);
    await page.getByText('Showing 100 entries (more below)').waitFor();
    if (process.env.CONSOLE_TEST_TIMINGS) console.log(`10,000-entry folder: first page shown after ${elapsed} ms`);
    // A generous bound for a shared 2-core machine; on an idle one this is well under a second.
    expect(elapsed).toBeLessThan(5000);
    await page.getByRole('button', { name: 'Load 100 more' }).click();
    await page.locator('tr[data-path="/big/e00200.txt"]').waitFor();
    expect(await page.locator('table.entries tbody tr').count()).toBe(200);
    await page.goto(`${gw.url}/console/w/${state.workspaceId}`);
    await page.getByRole('link', { name: 'notes' }).waitFor();
    await shot('volumes');
  });

  it('switches organisation with a platform key', async () => {
    await page.goto(`${gw.url}/console/`);
    await link('Research').waitFor();
    const org = page.getByRole('banner').getByLabel('Organisation');
    await org.fill('another-org');
    await page.getByRole('button', { name: 'Switch' }).click();
    await page.getByRole('heading', { name: 'Workspaces in another-org' }).waitFor();
    await page.getByText('No workspaces yet').waitFor();
    await page.reload();
    await page.getByRole('heading', { name: 'Workspaces in another-org' }).waitFor();
    await org.fill(state.org);
    await page.getByRole('button', { name: 'Switch' }).click();
    await link('Research').waitFor();
  });

  it('is keyboard-operable, names every control, and keeps text contrast at WCAG AA', async () => {
    await page.goto(`${gw.url}/console/`);
    await page.getByRole('heading', { name: /Workspaces/ }).waitFor();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
    await page.keyboard.press('Enter');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('main');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Research');

    // A search with the keyboard alone: Tab to the field, type, Enter.
    await page.getByRole('link', { name: 'Search' }).first().focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Search' }).waitFor();
    await page.getByLabel('Volume', { exact: true }).selectOption({ label: 'notes' });
    while (!(await page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.name === 'query')))
      await page.keyboard.press('Tab');
    await page.keyboard.type('zebracorn');
    await page.keyboard.press('Enter');
    await page.locator('.hit', { hasText: '/zebra.md' }).waitFor();

    const pages: [string, () => Promise<void>][] = [
      ['search results', async () => undefined],
      [`/w/${state.workspaceId}`, () => link('notes').waitFor()],
      [`/v/${state.volumeId}`, () => page.getByText('Live: changes by others appear here').waitFor()],
      [`/v/${state.volumeId}?tab=index`, () => page.getByTestId('reindex-percent').waitFor()],
      [`/v/${state.volumeId}/entry?path=%2Fzebra.md`, () => page.getByRole('link', { name: 'Download zebra.md' }).waitFor()],
      ['/keys', () => page.getByRole('row', { name: /reader/ }).waitFor()],
    ];
    for (const [route, ready] of pages) {
      if (route.startsWith('/')) await page.goto(`${gw.url}/console${route}`);
      await ready();
      // Every form control has an accessible name.
      const unnamed = await page.evaluate(() =>
        [...document.querySelectorAll('input, select, textarea, button')]
          .filter((el) => {
            const e = el as HTMLInputElement;
            return !(e.labels?.length || e.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent?.trim()));
          })
          .map((el) => el.outerHTML.slice(0, 80)),
      );
      expect(unnamed, route).toEqual([]);
      expect(await lowContrast(page), route).toEqual([]);
    }
  });

  it('signs out: the key leaves session storage, and never was in a URL or the logs', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length }))).toEqual({ session: 0, local: 0 });
    // A reload stays signed out.
    await page.reload();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(requested.length).toBeGreaterThan(10);
    expect(requested.filter((u) => u.includes(ADMIN_KEY))).toEqual([]);
    // Nothing from anywhere else (no CDN, no fonts, no telemetry): the console works offline.
    expect(requested.filter((u) => new URL(u).origin !== gw.url)).toEqual([]);
    expect(logs.length).toBeGreaterThan(10);
    expect(logs.filter((l) => l.includes(ADMIN_KEY) || l.includes('vgk_'))).toEqual([]);
    expect(browserErrors.filter((e) => !/status of 40[01]/.test(e))).toEqual([]);
  });
});

describe('an app key in the console', () => {
  it('sees only what its mounts reach, searches as its app, and gets a message (not a broken page) where it lacks a scope', async () => {
    await gql('mutation($v: ID!) { createMount(volumeId: $v, input: { appId: "agent", pathPattern: "/zebra.md" }) { id } }', {
      v: state.volumeId,
    });
    const appKey = await createKey(gw, state.org, ['workspaces:read', 'volumes:read', 'entries:read', 'search'], 'agent');
    const tab = await context.newPage();
    try {
      await tab.goto(`${gw.url}/console/`);
      await tab.getByLabel('API key').fill(appKey);
      await tab.getByRole('button', { name: 'Sign in' }).click();
      await tab.getByText('app key (agent)').waitFor();
      await tab.getByRole('link', { name: 'Research' }).click();
      await tab.getByRole('link', { name: 'notes', exact: true }).click();
      // Its mount reaches /zebra.md alone: the folder shows that entry and nothing else.
      await tab.locator('tr[data-path="/zebra.md"]').waitFor();
      expect(await tab.locator('table.entries tbody tr').count()).toBe(1);
      await tab.getByRole('link', { name: 'Search' }).first().click();
      await tab.getByLabel('Every volume an app can read (searchAll)').check();
      expect(await tab.getByLabel('As app').getAttribute('placeholder')).toBe('agent');
      await tab.getByLabel('Query').fill('zebracorn');
      await tab.getByRole('button', { name: 'Search' }).click();
      await tab.locator('.hit', { hasText: '/zebra.md' }).waitFor();
      await tab.getByRole('link', { name: 'API keys' }).click();
      await tab
        .getByRole('alert')
        .filter({ hasText: /FORBIDDEN/ })
        .waitFor();
      await tab.getByRole('heading', { name: /API keys/ }).waitFor();
      // Revoked while signed in: the next request signs the tab out, saying why.
      const keys = await gql('query($org: ID) { apiKeys(orgId: $org, first: 50) { edges { node { id appId } } } }', { org: state.org });
      const id = keys.apiKeys.edges.find((e: { node: { appId: string | null } }) => e.node.appId === 'agent').node.id;
      await gql('mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id });
      await tab.getByRole('link', { name: 'Workspaces' }).click();
      await tab.getByRole('alert').filter({ hasText: 'no longer accepts this key' }).waitFor();
      await tab.getByRole('button', { name: 'Sign in' }).waitFor();
      expect(await tab.evaluate(() => sessionStorage.length)).toBe(0);
    } finally {
      await tab.close();
    }
  });
});

describe('cancelling a reindex from the console', () => {
  it('cancels a queued reindex (on a gateway whose job workers are off, so it stays queued)', async () => {
    const idle = await startGateway({ CONSOLE_DIR: outDir, JOB_CONCURRENCY: '0' });
    const tab = await context.newPage();
    try {
      const ws = await idle.call('POST', '/v1/orgs/quiet/workspaces', { name: 'quiet' });
      expect(ws.status).toBe(201);
      const vol = await idle.call('POST', `/v1/orgs/quiet/workspaces/${ws.body.workspace_id}/volumes`, {
        name: 'still',
        indexing_mode: 'manual',
      });
      expect(vol.status).toBe(201);
      const volumeId = vol.body.volume.volume_id;
      await tab.goto(`${idle.url}/console/v/${volumeId}?tab=index`);
      await tab.getByLabel('API key').fill(ADMIN_KEY);
      await tab.getByLabel(/^Organisation/).fill('quiet');
      await tab.getByRole('button', { name: 'Sign in' }).click();
      await tab.getByRole('heading', { name: 'Reindex' }).waitFor();
      await tab.getByRole('button', { name: 'Start reindex' }).click();
      await tab.locator('.reindex .badge-queued').waitFor();
      expect(await tab.getByRole('button', { name: 'Start reindex' }).isDisabled()).toBe(true);
      await tab.getByRole('button', { name: 'Cancel reindex' }).click();
      await tab.locator('.reindex .badge-cancelled').waitFor();
      const state = await idle.gql('query($v: ID!) { volume(id: $v) { reindex { status } } }', { v: volumeId });
      expect(state.body.data.volume.reindex.status).toBe('cancelled');
      expect(await tab.getByRole('button', { name: 'Start reindex' }).isEnabled()).toBe(true);
    } finally {
      await tab.close();
      await idle.stop();
    }
  });
});
