"""fission.core for job modules written for MARVELO: jobs, head and pipes."""
