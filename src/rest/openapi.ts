import { createRestApp } from './app.js';

/** The OpenAPI 3.1 document of /v1, exactly as the gateway serves it at /v1/openapi.json. */
export async function openApiDocument(): Promise<unknown> {
  const app = createRestApp({ adminApiKey: undefined, maxJsonBytes: 1, maxEntryBytes: 1 });
  const res = await app.request('/v1/openapi.json');
  return res.json();
}
