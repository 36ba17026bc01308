"""embedrt.ray: the batch job on Ray Data, across the actors of a cluster (extra 'ray').

    from embedrt.ray import EmbedBatch
    ds = ds.map_batches(EmbedBatch, fn_constructor_kwargs={"model": "/shared/artifact"},
                        compute=ray.data.ActorPoolStrategy(size=8), num_cpus=2)

    from embedrt.ray import RayJobConfig, run_ray_job     # `embedrt embed --ray`
    run_ray_job("s3://bucket/texts/", "s3://bucket/out.parquet", "/shared/artifact", RayJobConfig())

batch.py: the callable class for Dataset.map_batches (one Encoder per actor). input.py: the
parquet input listed on the driver, rows numbered as the local job numbers them. config.py:
what the job is told and reports. job.py: the whole job (scan, embed, write). output.py: its
output checked, written empty, counted, removed. Importing this package needs no Ray; using it
does, and says so.
"""

from .batch import ActorShare, EmbedBatch, require_ray
from .config import RayJobConfig, RayJobSummary
from .job import run_ray_job

__all__ = [
    "ActorShare",
    "EmbedBatch",
    "RayJobConfig",
    "RayJobSummary",
    "require_ray",
    "run_ray_job",
]
