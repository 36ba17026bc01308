"""embedrt.jobs: batch embedding jobs over files, resumable after a kill (extra 'jobs' for
parquet and progress bars).

    from embedrt import Encoder
    from embedrt.jobs import JobConfig, run_job
    summary = run_job("rows.jsonl.gz", "out.parquet", Encoder.load(path), JobConfig(id_field="id"))

readers.py (txt, jsonl, csv, tsv, parquet in) -> pipeline.py (stages in threads) -> writers.py
(npy, parquet out), with ledger.py recording committed shards and progress.py reporting;
config.py holds JobConfig and JobSummary; job.py ties them together.
"""

from .config import ON_ERROR, JobConfig, JobSummary
from .job import job_identity, run_job

__all__ = ["ON_ERROR", "JobConfig", "JobSummary", "job_identity", "run_job"]
