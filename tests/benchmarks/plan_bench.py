"""Planning a batch over a folder of many parquet parts on S3 (moto's server on 127.0.0.1).

    .venv/bin/python tests/benchmarks/plan_bench.py [--parts 500] [--latency-ms 0 20]

Planning reads every part's version and footer. The baseline reads them one part
after another (PLAN_THREADS = 1) in the same process; ours reads PLAN_THREADS parts
at once. Moto answers on loopback in about a millisecond; `--latency-ms` adds a
sleep before each request to stand in for the round trip to a real S3 endpoint.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import uuid
from pathlib import Path


def main() -> int:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from moto.server import ThreadedMotoServer

    from airflow_mlops.config import parse_pipeline_config
    from airflow_mlops.inference import plan as planning
    from airflow_mlops.registry import ModelRegistry
    from airflow_mlops.storage.s3 import S3ArtifactStore
    from airflow_mlops.testing.s3 import s3_client_for
    from airflow_mlops.training import train_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = s3_client_for(f"http://{host}:{port}")
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket)
        store = S3ArtifactStore(f"s3://{bucket}/root", client=client)
        features = [f"f{i}" for i in range(5)]
        config = parse_pipeline_config({
            "pipeline": "bench", "data": {"train": "unused.parquet", "target": "label"},
            "model": {"flavor": "xgboost", "task": "binary_classification",
                      "params": {"n_estimators": 5, "early_stopping_rounds": 0}},
            "inference": {"input": "incoming", "chunk_rows": 10_000},
        })
        rng = np.random.default_rng(0)
        train = pd.DataFrame(rng.normal(size=(2_000, 5)), columns=features).assign(label=lambda d: (d.f0 > 0).astype(int))
        trained = train_model(config, train, None, store, output_prefix="models/v1")
        registry = ModelRegistry(f"sqlite:///{Path(tempfile.mkdtemp()) / 'registry.db'}")
        version = registry.register_version("bench", artifact_uri=trained.model_uri, artifact_sha256=trained.artifact.sha256,
                                            flavor="xgboost", task="binary_classification")
        registry.set_alias("bench", "champion", version.version, reason="benchmark")
        for part in range(args.parts):
            table = pa.table({"id": np.arange(2_000) + part * 2_000,
                              **{f: rng.normal(size=2_000) for f in features}})
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, row_group_size=1_000)
            store.write_bytes(f"incoming/part-{part:05d}.parquet", sink.getvalue().to_pybytes())

        print(f"{args.parts} parquet parts of 2,000 rows (2 row groups each) on moto's S3 server; PLAN_THREADS = "
              f"{planning.PLAN_THREADS}")
        print(f"{'added latency':>14}{'one at a time s':>17}{'ours s':>9}{'speed-up':>10}")
        ours_threads = planning.PLAN_THREADS
        for latency in args.latency_ms:
            def delay(**_: object) -> None:
                time.sleep(latency / 1000)  # noqa: B023 - read while this latency is being measured

            client.meta.events.register("before-send.s3", delay)
            seconds = {}
            for name, threads in (("baseline", 1), ("ours", ours_threads)):
                planning.PLAN_THREADS = threads
                started = time.perf_counter()
                plan = planning.plan_batch(config, registry, store, run_id=f"bench-{name}-{latency}")
                seconds[name] = time.perf_counter() - started
                assert sum(chunk.rows for chunk in plan.chunks) == args.parts * 2_000
            planning.PLAN_THREADS = ours_threads
            client.meta.events.unregister("before-send.s3", delay)
            print(f"{latency:>11.0f} ms{seconds['baseline']:>17.2f}{seconds['ours']:>9.2f}"
                  f"{seconds['baseline'] / seconds['ours']:>9.1f}x")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
