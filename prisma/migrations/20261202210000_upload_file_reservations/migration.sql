-- Unfinished uploads hold a file against max_file_count as they hold bytes against max_size_bytes:
-- a session whose path had no entry when it began reserves one file until it ends (reserved_files
-- on the session, 0 or 1), and the volume counts its sessions' reservations, which every write's
-- max_file_count check adds to entry_count (src/domain/entries/commit.ts).
ALTER TABLE "volumes" ADD COLUMN "reserved_files" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "upload_sessions" ADD COLUMN "reserved_files" INTEGER NOT NULL DEFAULT 0;
