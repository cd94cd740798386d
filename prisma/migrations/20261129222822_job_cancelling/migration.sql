-- AlterEnum
ALTER TYPE "JobStatus" ADD VALUE 'cancelling';

-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "rerun_payload" JSONB;
