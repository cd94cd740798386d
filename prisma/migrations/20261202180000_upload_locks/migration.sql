-- One request at a time per tus upload across replicas (src/domain/entries/upload-locks.ts): a
-- lease per upload id, taken where none is live, renewed by its holder; `release_requested` is a
-- waiter asking the holder to stop its request (tus's rule that a newer request wins the lock).
CREATE TABLE "upload_locks" (
    "upload_id" TEXT NOT NULL,
    "holder" TEXT NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "release_requested" BOOLEAN NOT NULL DEFAULT false,

    CONSTRAINT "upload_locks_pkey" PRIMARY KEY ("upload_id")
);
