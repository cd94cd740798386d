-- DropIndex
DROP INDEX "volumes_workspace_id_name_key";

-- CreateIndex
CREATE INDEX "volumes_workspace_id_name_idx" ON "volumes"("workspace_id", "name");

-- Hand-written (schema.prisma cannot express partial indexes; `npm run migration:new` ignores the
-- drops the engine proposes for them later).

-- Volume names are unique among a workspace's live volumes: a soft-deleted volume keeps its name
-- for a restore, and a new volume may take it meanwhile (the restore then answers 409).
CREATE UNIQUE INDEX "volumes_workspace_id_name_live_key" ON "volumes"("workspace_id", "name") WHERE "deleted_at" IS NULL;

-- Volume status (degraded) asks whether any entry's last indexing failed; failures are rare, so a
-- partial index answers that without scanning the volume's entries.
CREATE INDEX "entries_volume_id_index_failed_idx" ON "entries"("volume_id") WHERE "index_error" IS NOT NULL;

-- The maintenance purge looks for soft-deleted volumes past retention.
CREATE INDEX "volumes_deleted_at_idx" ON "volumes"("deleted_at") WHERE "deleted_at" IS NOT NULL;
