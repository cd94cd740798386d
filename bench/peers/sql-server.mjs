// Hand-written SQL servers for bench/graphql-read.ts: the "floor" a gateway could reach for the
// nested read. Plain node:http + a pg Pool on the gateway's database; GET /nested?org=…&volumes=N
// answers the same JSON as the gateway's GraphQL query (workspace → N volumes → 20 entries by path,
// 10 mounts, live locks):
//   STATEMENTS=4 (default): workspaces; their volumes; entries per volume (LATERAL … LIMIT 20);
//                           mounts + locks (one UNION ALL)
//   STATEMENTS=1:           one statement that builds the whole document with json_agg
// Usage: DATABASE_URL=… STATEMENTS=4 node bench/peers/sql-server.mjs   (prints "listening on http://…")
import { createServer } from 'node:http';
import pg from 'pg';
import { serve } from './serve.mjs';

const connectionString = process.env.DATABASE_URL;
if (!connectionString) throw new Error('DATABASE_URL is required');
const statements = Number(process.env.STATEMENTS ?? 4);
const pool = new pg.Pool({ connectionString, max: Number(process.env.POOL_SIZE ?? 10) });

const WORKSPACE = 'SELECT id, name FROM workspaces WHERE org_id = $1 ORDER BY id LIMIT 1';
const VOLUMES = `SELECT id, name, workspace_id FROM (
    SELECT v.*, row_number() OVER (PARTITION BY workspace_id ORDER BY id) AS rn
    FROM volumes v WHERE workspace_id = ANY($1::text[]) AND deleted_at IS NULL) v
  WHERE rn <= $2 ORDER BY workspace_id, id`;
const ENTRIES = `SELECT v.id AS volume_id, e.path, e.size_bytes::float8 AS size_bytes, e.version
  FROM unnest($1::text[]) AS v(id) CROSS JOIN LATERAL (
    SELECT path, size_bytes, version FROM entries
    WHERE volume_id = v.id AND (expires_at IS NULL OR expires_at > now()) ORDER BY path LIMIT 20) e`;
const MOUNTS_LOCKS = `SELECT 'm' AS kind, v.id AS volume_id,
    json_build_object('appId', m.app_id, 'pathPattern', m.path_pattern, 'accessLevel', m.access_level) AS obj
  FROM unnest($1::text[]) AS v(id) CROSS JOIN LATERAL (
    SELECT app_id, path_pattern, access_level FROM mounts WHERE volume_id = v.id ORDER BY id LIMIT 10) m
  UNION ALL
  SELECT 'l', l.volume_id, json_build_object('partition', l.partition, 'lockType', l.lock_type,
    'holderAppId', l.holder_app_id, 'fencingToken', l.fencing_token,
    'expiresAt', to_char(l.expires_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
  FROM (SELECT * FROM locks WHERE volume_id = ANY($1::text[]) AND released_at IS NULL AND expires_at > now()
        ORDER BY partition, acquired_at) l`;

async function fourStatements(org, n) {
  const ws = (await pool.query(WORKSPACE, [org])).rows;
  const vols = (await pool.query(VOLUMES, [ws.map((w) => w.id), n])).rows;
  const ids = vols.map((v) => v.id);
  const entries = (await pool.query(ENTRIES, [ids])).rows;
  const extras = (await pool.query(MOUNTS_LOCKS, [ids])).rows;
  const byVolume = new Map(vols.map((v) => [v.id, { id: v.id, name: v.name, entries: { edges: [] }, mounts: { edges: [] }, locks: [] }]));
  for (const e of entries)
    byVolume.get(e.volume_id).entries.edges.push({ node: { path: e.path, sizeBytes: e.size_bytes, version: e.version } });
  for (const x of extras) {
    const v = byVolume.get(x.volume_id);
    if (x.kind === 'm') v.mounts.edges.push({ node: x.obj });
    else v.locks.push(x.obj);
  }
  const workspaces = ws.map((w) => ({
    node: {
      id: w.id,
      name: w.name,
      volumes: { edges: vols.filter((v) => v.workspace_id === w.id).map((v) => ({ node: byVolume.get(v.id) })) },
    },
  }));
  return JSON.stringify({ data: { workspaces: { edges: workspaces } } });
}

const ONE = `SELECT json_build_object('data', json_build_object('workspaces', json_build_object('edges', coalesce((
  SELECT json_agg(json_build_object('node', json_build_object('id', w.id, 'name', w.name, 'volumes', json_build_object('edges', coalesce((
    SELECT json_agg(json_build_object('node', json_build_object('id', v.id, 'name', v.name,
      'entries', json_build_object('edges', coalesce((
        SELECT json_agg(json_build_object('node', json_build_object('path', e.path, 'sizeBytes', e.size_bytes, 'version', e.version)) ORDER BY e.path)
        FROM (SELECT path, size_bytes, version FROM entries
              WHERE volume_id = v.id AND (expires_at IS NULL OR expires_at > now()) ORDER BY path LIMIT 20) e), '[]'::json)),
      'mounts', json_build_object('edges', coalesce((
        SELECT json_agg(json_build_object('node', json_build_object('appId', m.app_id, 'pathPattern', m.path_pattern, 'accessLevel', m.access_level)) ORDER BY m.id)
        FROM (SELECT id, app_id, path_pattern, access_level FROM mounts WHERE volume_id = v.id ORDER BY id LIMIT 10) m), '[]'::json)),
      'locks', coalesce((
        SELECT json_agg(json_build_object('partition', l.partition, 'lockType', l.lock_type, 'holderAppId', l.holder_app_id,
          'fencingToken', l.fencing_token, 'expiresAt', to_char(l.expires_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) ORDER BY l.partition, l.acquired_at)
        FROM locks l WHERE l.volume_id = v.id AND l.released_at IS NULL AND l.expires_at > now()), '[]'::json)
    )) ORDER BY v.id)
    FROM (SELECT id, name FROM volumes WHERE workspace_id = w.id AND deleted_at IS NULL ORDER BY id LIMIT $2) v), '[]'::json)))) ORDER BY w.id)
  FROM (SELECT id, name FROM workspaces WHERE org_id = $1 ORDER BY id LIMIT 1) w), '[]'::json))))::text AS doc`;

async function oneStatement(org, n) {
  return (await pool.query(ONE, [org, n])).rows[0].doc;
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/nested') {
      res.writeHead(404).end();
      return;
    }
    const org = url.searchParams.get('org') ?? 'bench';
    const n = Math.min(200, Number(url.searchParams.get('volumes') ?? 10));
    const body = statements === 1 ? await oneStatement(org, n) : await fourStatements(org, n);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err?.message ?? err));
  }
});
server.keepAliveTimeout = 65_000;
serve(server, () => pool.end());
