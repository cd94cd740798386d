// PostGraphile 5 (default preset, PostGraphileAmber) over the gateway's database, schema `public`,
// for bench/graphql-read.ts. Usage: DATABASE_URL=… node --import ./bench/peers/with-resolvers.mjs bench/peers/postgraphile-server.mjs
// Prints "listening on http://host:port" once it serves /graphql.
import { createServer } from 'node:http';
import { postgraphile } from 'postgraphile';
import { makePgService } from 'postgraphile/adaptors/pg';
import { grafserv } from 'postgraphile/grafserv/node';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { serve } from './serve.mjs';

const connectionString = process.env.DATABASE_URL;
if (!connectionString) throw new Error('DATABASE_URL is required');
const poolSize = Number(process.env.POOL_SIZE ?? 10);

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [makePgService({ connectionString, schemas: ['public'], poolConfig: { max: poolSize } })],
  grafserv: { graphqlPath: '/graphql', graphiql: false, watch: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.keepAliveTimeout = 65_000;
await serv.addTo(server);
if (process.env.PRINT_SCHEMA) {
  const { printSchema } = await import('postgraphile/graphql');
  process.stderr.write(printSchema(await pgl.getSchema()));
}
serve(server, () => pgl.release());
