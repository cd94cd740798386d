import type { HttpBindings } from '@hono/node-server';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { z } from 'zod';
import type { Principal } from '../domain/access/principal.js';
import type { VolumeRoute, WorkspaceRoute } from '../domain/shared/routes.js';
import type { VolumeParams, WorkspaceParams } from './schemas.js';

// What every route module of the REST layer shares: the Hono environment (the caller's principal is
// set by app.ts before any route runs) and the mapping of legacy path parameters to domain routes.

export type RestEnv = { Bindings: Partial<HttpBindings>; Variables: { principal: Principal } };
export type RestApp = OpenAPIHono<RestEnv>;

/** A peer dialect (src/rest/dialects/): its app (full paths) and the OpenAPI tag its operations carry. */
export interface Dialect {
  app: RestApp;
  /** Where its routes live (Hono patterns, as the dialect's guards use them): CORS applies there too. */
  prefix: string;
  tag: { name: string; description: string };
}

/** `{org_id, workspace_id}` of a path as the domain's route. */
export function workspaceRoute(p: z.infer<typeof WorkspaceParams>): WorkspaceRoute {
  return { orgId: p.org_id, workspaceId: p.workspace_id };
}

/** `{org_id, workspace_id, volume_id}` of a path as the domain's route. */
export function volumeRoute(p: z.infer<typeof VolumeParams>): VolumeRoute {
  return { orgId: p.org_id, workspaceId: p.workspace_id, volumeId: p.volume_id };
}
