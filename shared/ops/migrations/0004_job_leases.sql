-- A running job holds a short lease that a heartbeat keeps extending while its body runs. A retry that
-- finds the lease run out knows the attempt died (timeout, OOM, deploy) and runs the job again.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease_until timestamptz;
