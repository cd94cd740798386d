import type { Runtime } from '../domain/shared/runtime.js';
import { createRestApp } from './app.js';
import { createDialects } from './dialects/index.js';

/**
 * Routes only need a runtime when a request is handled; the document is built from their
 * definitions. This one refuses any use, so nothing can quietly run against it.
 */
const noRuntime = new Proxy({} as Runtime, {
  get(_target, prop) {
    throw new Error(`the OpenAPI document was being built: no runtime (asked for ${String(prop)})`);
  },
});

/** The OpenAPI 3.1 document of /v1, exactly as the gateway serves it at /v1/openapi.json. */
export async function openApiDocument(): Promise<unknown> {
  const dialects = createDialects(noRuntime, { adminApiKey: undefined, maxJsonBytes: 1 });
  const app = createRestApp(noRuntime, { adminApiKey: undefined, maxJsonBytes: 1, maxEntryBytes: 1, dialects });
  const res = await app.request('/v1/openapi.json');
  return res.json();
}
