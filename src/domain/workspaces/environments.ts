import type { Principal } from '../access/principal.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { listOrgVolumes, OrgVolumeListQuery } from '../volumes/listing.js';
import { listWorkspaces, WorkspaceListQuery } from './listing.js';
import { findOrCreateWorkspaceNamed } from './workspaces.js';

// Which workspace an environment's volumes live in, for the environment volumes API (whose callers
// name only an environment: `/{envId}/volume`). Environments are not workspaces in our model, so:
//  1. the workspace of the environment's oldest live volume (the caller can see), if any;
//  2. else the workspace named `env-<envId>` (the oldest of that name), if any;
//  3. else (create only) that workspace, created now.
// One workspace per environment keeps the reference's scoping: volume names are unique per
// workspace, so two environments may each have their own `postgres-data`.
//
// Two first creates for one environment make one workspace, on one gateway or across replicas:
// the workspace is found or created under a lock on its name (findOrCreateWorkspaceNamed).

const workspaceName = (envId: string) => `env-${envId}`;

/** The oldest workspace with exactly this name the caller can see (needs workspaces:read), or null. */
async function namedWorkspace(rt: Runtime, p: Principal, orgId: string, name: string): Promise<string | null> {
  let cursor: string | undefined;
  for (;;) {
    // `search` is a substring of name or description; ids are time-ordered (uuid v7): the default order is the oldest first.
    const q = parseInput(WorkspaceListQuery, { search: name, limit: 200, ...(cursor && { cursor }) }, ['query']);
    const page = await listWorkspaces(rt, p, orgId, q);
    const hit = page.items.find((w) => w.name === name);
    if (hit) return hit.id;
    if (!page.hasMore || !page.nextCursor) return null;
    cursor = page.nextCursor;
  }
}

/** The workspace of the environment's oldest live volume the caller can see (needs volumes:read), or null. */
async function workspaceOfVolumes(rt: Runtime, p: Principal, orgId: string, envId: string): Promise<string | null> {
  const q = parseInput(OrgVolumeListQuery, { environment_id: envId, limit: 1 }, ['path', 'envId']);
  const page = await listOrgVolumes(rt, p, orgId, q);
  return page.items[0]?.workspaceId ?? null;
}

export interface EnvironmentWorkspaces {
  /** The environment's workspace, or null when it has none yet. */
  find(p: Principal, orgId: string, envId: string): Promise<string | null>;
  /** The environment's workspace, created (needs workspaces:write) when it has none yet. */
  findOrCreate(p: Principal, orgId: string, envId: string): Promise<string>;
}

export function environmentWorkspaces(rt: Runtime): EnvironmentWorkspaces {
  async function find(p: Principal, orgId: string, envId: string): Promise<string | null> {
    return (await workspaceOfVolumes(rt, p, orgId, envId)) ?? (await namedWorkspace(rt, p, orgId, workspaceName(envId)));
  }

  async function findOrCreate(p: Principal, orgId: string, envId: string): Promise<string> {
    const found = await find(p, orgId, envId);
    if (found) return found;
    const { workspace } = await findOrCreateWorkspaceNamed(rt, p, orgId, {
      name: workspaceName(envId),
      description: `Volumes of environment ${envId} (environment volumes API)`,
      tags: ['environment'],
    });
    return workspace.id;
  }

  return { find, findOrCreate };
}
