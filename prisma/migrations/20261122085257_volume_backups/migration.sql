-- CreateEnum
CREATE TYPE "BackupStatus" AS ENUM ('queued', 'running', 'completed', 'failed');

-- CreateTable
CREATE TABLE "backups" (
    "id" TEXT NOT NULL,
    "org_id" TEXT NOT NULL,
    "workspace_id" TEXT NOT NULL,
    "volume_id" TEXT NOT NULL,
    "volume_name" TEXT NOT NULL,
    "timestamp" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "status" "BackupStatus" NOT NULL DEFAULT 'queued',
    "progress" JSONB NOT NULL DEFAULT '{}',
    "entry_count" INTEGER NOT NULL DEFAULT 0,
    "file_count" INTEGER NOT NULL DEFAULT 0,
    "total_bytes" BIGINT NOT NULL DEFAULT 0,
    "manifest_sha256" TEXT,
    "error" TEXT,
    "created_by" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMP(3),
    "snapshot_at" TIMESTAMP(3),
    "completed_at" TIMESTAMP(3),

    CONSTRAINT "backups_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "backups_workspace_id_id_idx" ON "backups"("workspace_id", "id");

-- CreateIndex
CREATE UNIQUE INDEX "backups_volume_id_timestamp_key" ON "backups"("volume_id", "timestamp");

-- AddForeignKey
ALTER TABLE "backups" ADD CONSTRAINT "backups_workspace_id_fkey" FOREIGN KEY ("workspace_id") REFERENCES "workspaces"("id") ON DELETE CASCADE ON UPDATE CASCADE;
