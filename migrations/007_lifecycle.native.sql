-- Native flavor: nothing to create. Daily partitions are created ahead and dropped for retention, rows
-- that landed in the DEFAULT partitions are moved into their day's partition, and expired rollup rows
-- are deleted by the receiver's maintenance task (receiver/storage/maintenance.py), with the retention
-- days of the [maintenance] configuration section (defaults: the migration report's numbers).
SELECT 1;
