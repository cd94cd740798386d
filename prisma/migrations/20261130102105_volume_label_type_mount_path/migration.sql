-- CreateEnum
CREATE TYPE "VolumeType" AS ENUM ('data', 'model', 'workspace');

-- AlterTable
-- Generated as `ADD COLUMN "label" TEXT NOT NULL, ADD COLUMN "mount_path" TEXT NOT NULL`, which fails on a
-- table with rows. Edited by hand: add them nullable, fill existing volumes with the defaults a new volume
-- gets (src/domain/volumes/inputs.ts: defaultLabel, defaultMountPath), then make them required.
ALTER TABLE "volumes" ADD COLUMN     "label" TEXT,
ADD COLUMN     "mount_path" TEXT,
ADD COLUMN     "volume_type" "VolumeType" NOT NULL DEFAULT 'data';

-- The label defaults to the name, cut to 128 characters (without the spaces the cut leaves at its end).
UPDATE "volumes" SET "label" = CASE WHEN length("name") > 128 THEN rtrim(left("name", 128)) ELSE "name" END;

-- The mount path defaults to /data/<slug of the label>: NFKD with combining accents (U+0300-U+036F)
-- removed, runs of anything but ASCII letters and digits as one '-', no '-' at either end, at most 100
-- characters, lower case; 'volume' when nothing is left. (normalize() needs a UTF8 database.)
UPDATE "volumes" SET "mount_path" = '/data/' || COALESCE(NULLIF(lower(rtrim(left(btrim(regexp_replace(regexp_replace(
  CASE WHEN current_setting('server_encoding') = 'UTF8' THEN normalize("label", NFKD) ELSE "label" END,
  '[\u0300-\u036f]', '', 'g'), '[^A-Za-z0-9]+', '-', 'g'), '-'), 100), '-')), ''), 'volume');

ALTER TABLE "volumes" ALTER COLUMN "label" SET NOT NULL,
ALTER COLUMN "mount_path" SET NOT NULL;
