-- A volume's entries in id order (issue #14): a reindex walks them 16 at a time by keyset
-- (`volume_id = $1 AND id > $cursor ORDER BY id LIMIT 16`). Without this index the planner could
-- only choose between the primary key (fast while the volume is most of the table) and the
-- (volume_id, path) index plus a sort of the whole volume, and with a parameter's generic
-- estimates it chose the sort: 18 ms a batch at 30,000 entries on PGlite, O(volume), most of a
-- 100,000-entry reindex's time. This index answers it in one range scan at any size.
CREATE INDEX "entries_volume_id_id_idx" ON "entries"("volume_id", "id");
