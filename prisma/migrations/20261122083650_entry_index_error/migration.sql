-- AlterTable
ALTER TABLE "entries" ADD COLUMN     "index_error" TEXT;
