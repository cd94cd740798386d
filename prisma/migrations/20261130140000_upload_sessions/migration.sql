-- CreateEnum
CREATE TYPE "UploadProtocol" AS ENUM ('tus', 'signed_url');

-- CreateEnum
CREATE TYPE "UploadStatus" AS ENUM ('uploading', 'completing', 'completed', 'failed', 'aborted', 'expired');

-- AlterTable
ALTER TABLE "volumes" ADD COLUMN     "reserved_bytes" BIGINT NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE "upload_sessions" (
    "id" TEXT NOT NULL,
    "volume_id" TEXT NOT NULL,
    "workspace_id" TEXT NOT NULL,
    "org_id" TEXT NOT NULL,
    "protocol" "UploadProtocol" NOT NULL,
    "status" "UploadStatus" NOT NULL DEFAULT 'uploading',
    "path" TEXT NOT NULL,
    "storage_id" TEXT NOT NULL,
    "size_bytes" BIGINT,
    "reserved_bytes" BIGINT NOT NULL DEFAULT 0,
    "bytes_received" BIGINT NOT NULL DEFAULT 0,
    "mime_type" TEXT,
    "filename" TEXT,
    "expected_sha256" TEXT,
    "fields" JSONB NOT NULL DEFAULT '{}',
    "created_by" TEXT NOT NULL,
    "app_id" TEXT,
    "entry_id" TEXT,
    "entry_version" INTEGER,
    "error" JSONB,
    "expires_at" TIMESTAMP(3) NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,
    "completed_at" TIMESTAMP(3),

    CONSTRAINT "upload_sessions_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "upload_sessions_volume_id_status_idx" ON "upload_sessions"("volume_id", "status");

-- CreateIndex
CREATE INDEX "upload_sessions_status_expires_at_idx" ON "upload_sessions"("status", "expires_at");

-- AddForeignKey
ALTER TABLE "upload_sessions" ADD CONSTRAINT "upload_sessions_volume_id_fkey" FOREIGN KEY ("volume_id") REFERENCES "volumes"("id") ON DELETE CASCADE ON UPDATE CASCADE;
