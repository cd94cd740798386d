// `npm run schema:print`: writes the committed contracts, schema.graphql and docs/openapi.json, from
// the code that serves them. test/contracts.test.ts fails when either is stale.
import fs from 'node:fs/promises';
import { printGraphQLSchema } from '../src/graphql/print.js';
import { openApiDocument } from '../src/rest/openapi.js';

const root = new URL('../', import.meta.url);
await fs.writeFile(new URL('schema.graphql', root), printGraphQLSchema());
await fs.mkdir(new URL('docs/', root), { recursive: true });
await fs.writeFile(new URL('docs/openapi.json', root), `${JSON.stringify(await openApiDocument(), null, 2)}\n`);
console.log('wrote schema.graphql and docs/openapi.json');
