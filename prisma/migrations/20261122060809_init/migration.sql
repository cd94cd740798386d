CREATE EXTENSION IF NOT EXISTS "vector";

-- CreateEnum
CREATE TYPE "BucketStatus" AS ENUM ('pending', 'active', 'failed');

-- CreateEnum
CREATE TYPE "IndexingMode" AS ENUM ('auto', 'manual');

-- CreateEnum
CREATE TYPE "ChunkingStrategy" AS ENUM ('recursive', 'fixed', 'none');

-- CreateEnum
CREATE TYPE "VolumeStatus" AS ENUM ('active', 'degraded', 'error', 'deleted');

-- CreateEnum
CREATE TYPE "AccessLevel" AS ENUM ('read', 'write', 'admin');

-- CreateEnum
CREATE TYPE "LockType" AS ENUM ('exclusive', 'shared');

-- CreateEnum
CREATE TYPE "JobStatus" AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

-- CreateTable
CREATE TABLE "organizations" (
    "id" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "organizations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" TEXT NOT NULL,
    "org_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "secret_hash" TEXT NOT NULL,
    "scopes" TEXT[],
    "app_id" TEXT,
    "created_by" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMP(3),
    "revoked_at" TIMESTAMP(3),

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "workspaces" (
    "id" TEXT NOT NULL,
    "org_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "owner_id" TEXT,
    "subscription_plan_id" TEXT,
    "is_active" BOOLEAN NOT NULL DEFAULT true,
    "tags" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "region" TEXT NOT NULL DEFAULT 'us-east-1',
    "s3_bucket" TEXT NOT NULL,
    "bucket_status" "BucketStatus" NOT NULL DEFAULT 'pending',
    "bucket_error" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "workspaces_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "volumes" (
    "id" TEXT NOT NULL,
    "workspace_id" TEXT NOT NULL,
    "org_id" TEXT NOT NULL,
    "environment_id" TEXT,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "embedding_model_id" TEXT NOT NULL DEFAULT 'hash-1024',
    "extraction_model_id" TEXT,
    "indexing_mode" "IndexingMode" NOT NULL DEFAULT 'auto',
    "chunking_strategy" "ChunkingStrategy" NOT NULL DEFAULT 'recursive',
    "chunk_size" INTEGER NOT NULL DEFAULT 512,
    "chunk_overlap" INTEGER NOT NULL DEFAULT 64,
    "status" "VolumeStatus" NOT NULL DEFAULT 'active',
    "tags" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "is_shared" BOOLEAN NOT NULL DEFAULT false,
    "version" INTEGER NOT NULL DEFAULT 1,
    "reindex_status" TEXT,
    "reindex_started_at" TIMESTAMP(3),
    "reindex_completed_at" TIMESTAMP(3),
    "reindex_progress" JSONB,
    "reindex_error" TEXT,
    "active_embedder_id" TEXT,
    "max_size_bytes" BIGINT,
    "max_file_count" INTEGER,
    "max_mounts" INTEGER,
    "used_bytes" BIGINT NOT NULL DEFAULT 0,
    "entry_count" INTEGER NOT NULL DEFAULT 0,
    "mount_count" INTEGER NOT NULL DEFAULT 0,
    "last_reconciled_at" TIMESTAMP(3),
    "created_by" TEXT NOT NULL,
    "modified_by" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,
    "deleted_at" TIMESTAMP(3),

    CONSTRAINT "volumes_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "mounts" (
    "id" TEXT NOT NULL,
    "volume_id" TEXT NOT NULL,
    "app_id" TEXT NOT NULL,
    "path_pattern" TEXT NOT NULL,
    "access_level" "AccessLevel" NOT NULL DEFAULT 'read',
    "granted_by" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "mounts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "entries" (
    "id" TEXT NOT NULL,
    "volume_id" TEXT NOT NULL,
    "path" TEXT NOT NULL,
    "content_type" TEXT NOT NULL,
    "content" JSONB,
    "content_text" TEXT,
    "mime_type" TEXT,
    "size_bytes" BIGINT NOT NULL DEFAULT 0,
    "schema_id" TEXT,
    "blob_key" TEXT,
    "sha256" TEXT,
    "content_hash" TEXT,
    "version" INTEGER NOT NULL DEFAULT 1,
    "is_indexed" BOOLEAN NOT NULL DEFAULT false,
    "indexed_at" TIMESTAMP(3),
    "total_chunks" INTEGER NOT NULL DEFAULT 0,
    "ttl_seconds" INTEGER,
    "expires_at" TIMESTAMP(3),
    "written_by_app_id" TEXT,
    "written_by_execution_id" TEXT,
    "tags" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "entries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "chunks" (
    "id" TEXT NOT NULL,
    "entry_id" TEXT NOT NULL,
    "volume_id" TEXT NOT NULL,
    "chunk_index" INTEGER NOT NULL,
    "content" TEXT NOT NULL,
    "content_hash" TEXT NOT NULL,
    "embedder_id" TEXT NOT NULL,
    "dims" INTEGER NOT NULL,
    "embedding" vector,
    "tsv" tsvector,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "chunks_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "locks" (
    "id" TEXT NOT NULL,
    "volume_id" TEXT NOT NULL,
    "partition" TEXT NOT NULL,
    "lock_type" "LockType" NOT NULL DEFAULT 'exclusive',
    "holder_app_id" TEXT NOT NULL,
    "holder_execution_id" TEXT,
    "fencing_token" BIGINT NOT NULL,
    "acquired_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMP(3) NOT NULL,
    "released_at" TIMESTAMP(3),

    CONSTRAINT "locks_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "fencing_counters" (
    "volume_id" TEXT NOT NULL,
    "partition" TEXT NOT NULL,
    "last_token" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "fencing_counters_pkey" PRIMARY KEY ("volume_id","partition")
);

-- CreateTable
CREATE TABLE "jobs" (
    "id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "status" "JobStatus" NOT NULL DEFAULT 'queued',
    "dedupe_key" TEXT,
    "volume_id" TEXT,
    "payload" JSONB NOT NULL DEFAULT '{}',
    "progress" JSONB,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "max_attempts" INTEGER NOT NULL DEFAULT 5,
    "run_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "locked_by" TEXT,
    "locked_until" TIMESTAMP(3),
    "last_error" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,
    "started_at" TIMESTAMP(3),
    "finished_at" TIMESTAMP(3),

    CONSTRAINT "jobs_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_secret_hash_key" ON "api_keys"("secret_hash");

-- CreateIndex
CREATE INDEX "api_keys_org_id_id_idx" ON "api_keys"("org_id", "id");

-- CreateIndex
CREATE UNIQUE INDEX "workspaces_s3_bucket_key" ON "workspaces"("s3_bucket");

-- CreateIndex
CREATE INDEX "workspaces_org_id_id_idx" ON "workspaces"("org_id", "id");

-- CreateIndex
CREATE INDEX "volumes_org_id_id_idx" ON "volumes"("org_id", "id");

-- CreateIndex
CREATE UNIQUE INDEX "volumes_workspace_id_name_key" ON "volumes"("workspace_id", "name");

-- CreateIndex
CREATE INDEX "mounts_app_id_idx" ON "mounts"("app_id");

-- CreateIndex
CREATE UNIQUE INDEX "mounts_volume_id_app_id_path_pattern_key" ON "mounts"("volume_id", "app_id", "path_pattern");

-- CreateIndex
CREATE INDEX "entries_expires_at_idx" ON "entries"("expires_at");

-- CreateIndex
CREATE UNIQUE INDEX "entries_volume_id_path_key" ON "entries"("volume_id", "path");

-- CreateIndex
CREATE INDEX "chunks_volume_id_embedder_id_idx" ON "chunks"("volume_id", "embedder_id");

-- CreateIndex
CREATE UNIQUE INDEX "chunks_entry_id_embedder_id_chunk_index_key" ON "chunks"("entry_id", "embedder_id", "chunk_index");

-- CreateIndex
CREATE INDEX "locks_volume_id_partition_expires_at_idx" ON "locks"("volume_id", "partition", "expires_at");

-- CreateIndex
CREATE UNIQUE INDEX "jobs_dedupe_key_key" ON "jobs"("dedupe_key");

-- CreateIndex
CREATE INDEX "jobs_status_run_at_idx" ON "jobs"("status", "run_at");

-- CreateIndex
CREATE INDEX "jobs_volume_id_idx" ON "jobs"("volume_id");

-- AddForeignKey
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "workspaces" ADD CONSTRAINT "workspaces_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "organizations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "volumes" ADD CONSTRAINT "volumes_workspace_id_fkey" FOREIGN KEY ("workspace_id") REFERENCES "workspaces"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "mounts" ADD CONSTRAINT "mounts_volume_id_fkey" FOREIGN KEY ("volume_id") REFERENCES "volumes"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "entries" ADD CONSTRAINT "entries_volume_id_fkey" FOREIGN KEY ("volume_id") REFERENCES "volumes"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "chunks" ADD CONSTRAINT "chunks_entry_id_fkey" FOREIGN KEY ("entry_id") REFERENCES "entries"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "chunks" ADD CONSTRAINT "chunks_volume_id_fkey" FOREIGN KEY ("volume_id") REFERENCES "volumes"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "locks" ADD CONSTRAINT "locks_volume_id_fkey" FOREIGN KEY ("volume_id") REFERENCES "volumes"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "fencing_counters" ADD CONSTRAINT "fencing_counters_volume_id_fkey" FOREIGN KEY ("volume_id") REFERENCES "volumes"("id") ON DELETE CASCADE ON UPDATE CASCADE;
