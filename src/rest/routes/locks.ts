import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { acquireLock, listLocks, releaseLock, renewLock } from '../../domain/locks/locks.js';
import { AcquireLockInput, RenewLockInput } from '../../domain/locks/partitions.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import { parseInput } from '../../domain/shared/validation.js';
import { type RestApp, volumeRoute } from '../env.js';
import { conflictResponse, errorResponses, Lock, Message, ok, VolumeParams } from '../schemas.js';
import { lockJson } from '../serializers.js';

const tags = ['Locks'];
const LockMessage = z.object({ message: z.string(), lock: Lock });

export function registerLockRoutes(rt: Runtime, app: RestApp): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks',
      operationId: 'listLocks',
      tags,
      summary: 'List active locks on a volume',
      description: 'The live locks: expired and released ones never block and are not listed. Needs volumes:read.',
      request: { params: VolumeParams },
      responses: { 200: ok(z.object({ locks: z.array(Lock) })), ...errorResponses },
    }),
    async (c) => {
      const locks = await listLocks(rt, c.get('principal'), volumeRoute(c.req.valid('param')));
      return c.json({ locks: locks.map(lockJson) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks',
      operationId: 'acquireLock',
      tags,
      summary: 'Acquire a partition lock on a volume',
      description:
        'exclusive (default) or shared; ttl_seconds 1-3600 (default 60). 409 names the holder and expiry when taken. The fencing_token increases strictly per partition.',
      request: { params: VolumeParams, body: { content: { 'application/json': { schema: AcquireLockInput } }, required: true } },
      responses: { 201: ok(LockMessage, 'Acquired'), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const lock = await acquireLock(rt, c.get('principal'), volumeRoute(c.req.valid('param')), c.req.valid('json'));
      return c.json({ message: 'Lock acquired successfully', lock: lockJson(lock) }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks/renew',
      operationId: 'renewLock',
      tags,
      summary: 'Renew a lock (its holder): same lock_id and fencing token, a new expires_at',
      description:
        'Extends a live lock by ttl_seconds from now. 404 when unknown or released, 403 when another app holds it or the holder has lost write access, 409 when it has already expired.',
      request: { params: VolumeParams, body: { content: { 'application/json': { schema: RenewLockInput } }, required: true } },
      responses: { 200: ok(LockMessage), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const lock = await renewLock(rt, c.get('principal'), volumeRoute(c.req.valid('param')), c.req.valid('json'));
      return c.json({ message: 'Lock renewed successfully', lock: lockJson(lock) }, 200);
    },
  );

  // The partition may hold slashes (/reports/), so the release route is a catch-all.
  app.delete('/orgs/:org_id/workspaces/:workspace_id/volumes/:volume_id/locks/:partition{.+}', async (c) => {
    const params = parseInput(VolumeParams, c.req.param(), ['path']);
    const { lock_id } = parseInput(z.object({ lock_id: z.string().min(1).max(64) }), c.req.query(), ['query']);
    await releaseLock(rt, c.get('principal'), volumeRoute(params), lock_id, c.req.param('partition'));
    return c.json({ message: 'Lock released successfully' });
  });
  app.openAPIRegistry.registerPath({
    method: 'delete',
    path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/locks/{partition}',
    operationId: 'releaseLock',
    tags,
    summary: 'Release a partition lock',
    description:
      'Releases the lock lock_id on the partition (which may hold slashes: …/locks/reports/). Its holder, or an org key with locks:write, may release it; releasing an expired lock succeeds too. 404 when unknown, released, or not on this partition.',
    request: {
      params: VolumeParams.extend({ partition: z.string().describe('The partition, slashes included: reports/ for /reports/') }),
      query: z.object({ lock_id: z.string().describe('Lock ID to release') }),
    },
    responses: { 200: ok(Message), ...errorResponses },
  });
}
