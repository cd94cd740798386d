import type { Runtime } from '../../domain/shared/runtime.js';
import type { Dialect } from '../env.js';
import { createEnvironmentDialect, BASE as ENVIRONMENT_BASE } from './environment/index.js';
import { createProjectDialect, BASE as PROJECT_BASE } from './project/index.js';
import { createQuotaDialect, BASE as QUOTA_BASE } from './quota/index.js';
import type { DialectOptions } from './shared.js';

export { type DialectOptions, ORG_HEADER, OrgIdHeader } from './shared.js';

/**
 * The three peer volume APIs served beside /v1 (issue #16; /work/shared/reference/peer-*.txt), each a
 * thin mapping over the same domain: project volumes (/api/v1/volumes), quota volumes (/v1/volumes)
 * and environment volumes (/{envId}/volume). app.ts mounts them before /v1; the environment
 * dialect's `/{envId}/volume` pattern comes last so fixed paths win.
 */
export function createDialects(rt: Runtime, opts: DialectOptions): Dialect[] {
  return [
    {
      app: createProjectDialect(rt, opts),
      prefix: PROJECT_BASE,
      tag: {
        name: 'project-volumes',
        description:
          'The project volumes peer API (/api/v1/volumes): volumes of a project (a workspace) with label, type, size in GB, mount path, sharing and sync to S3, in that API\'s shape. README, "Peer dialect: project volumes".',
      },
    },
    {
      app: createQuotaDialect(rt, opts),
      prefix: QUOTA_BASE,
      tag: {
        name: 'quota-volumes',
        description:
          'The quota volumes peer API (GET /v1/volumes, GET /v1/volumes/{id}): org-wide volumes with quotas, usage and status, in that API\'s shape. README, "Peer dialect: quota volumes".',
      },
    },
    {
      app: createEnvironmentDialect(rt, opts),
      prefix: ENVIRONMENT_BASE,
      tag: {
        name: 'environment-volumes',
        description:
          'The environment volumes peer API (/{envId}/volume): volumes of an environment with size in MB, mount path, versions and soft delete, in that API\'s shape. README, "Peer dialect: environment volumes".',
      },
    },
  ];
}
