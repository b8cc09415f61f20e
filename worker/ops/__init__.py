"""Operations around the jobs: the reaper, the nightly schedule, the model registry's moves, reports, metrics."""
