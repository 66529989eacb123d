"""Cluster benchmark: N small reshoot jobs through the server on 1 vs 2 Ray workers, and the time
from submit to the first streamed frame with Ray vs the in-process worker.

Jobs: the real ``reshoot`` job kind on a tiny synthetic shot (``sliding_square_scene``, 3 frames of
32x24, classical fill, no Gaussians), then ``--gpu-wait`` seconds of waiting that stand for the GPU
part of a real shot (Wan2.1-VACE inpainting: the CPU sits idle while the GPU works). On a 2-core
machine the CPU part is kept small so that cores are not the limit and the figure shows what two
GPU workers give; on a GPU cluster set ``--gpu-wait 0`` and use real shots. The Ray instance is
private to this process (head on loopback, ``num_cpus=2``, workers ``num_gpus=0``).

Prints jobs/s on 2 workers (value), on 1 worker (baseline), their ratio, and the first-frame times.
Usage: ``python bench/cluster.py [--jobs 8] [--gpu-wait 1.0] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
KIND = "bench.reshoot"


def run_waiting_reshoot(ctx) -> None:
    """The real reshoot job kind, then ``gpu_wait_s`` of (cancellable) waiting."""
    from backend.pipelines.reshoot.job import run_reshoot_job

    run_reshoot_job(ctx)
    end = time.monotonic() + float(ctx.params.get("gpu_wait_s", 0.0))
    while time.monotonic() < end:
        ctx.check_cancel()
        time.sleep(0.01)


def register() -> None:
    """Register ``bench.reshoot`` (imported as module ``cluster`` so Ray workers can import it too)."""
    from backend.jobs import register_job_kind
    from backend.pipelines.reshoot.job import validate_reshoot

    register_job_kind(KIND, run_waiting_reshoot, lambda params, inputs: validate_reshoot(
        {k: v for k, v in params.items() if k != "gpu_wait_s"}, inputs), description="reshoot + simulated GPU time")


def shot() -> tuple[dict, dict]:
    """Params and inputs of the tiny shot (3 frames, 32x24, one orbit)."""
    from backend.pipelines.reshoot.synthetic import sliding_square_scene

    scene = sliding_square_scene(num_frames=3, width=32, height=24)
    params = {"cameras": [scene.camera.to_dict()], "trajectories": [{"name": "orbit", "preset": "orbit:left:10"}],
              "gaussians": {"enabled": False}, "fps": 6.0}
    return params, {"frames": scene.frames, "depth": scene.depth.astype("float32")}


def throughput(jobs_dir: Path, executor, n_jobs: int, gpu_wait: float, tag: str) -> float:
    """Jobs per second for ``n_jobs`` submitted at once by one client (the server's per-client limit
    is raised so all are queued)."""
    from backend.server import Server, ServerConfig
    from protocol.client import BlockingClient

    params, inputs = shot()
    server = Server(ServerConfig(jobs_dir=jobs_dir, connection_file=jobs_dir.parent / f"{tag}.json",
                                 max_jobs_per_client=n_jobs + 1, executor=executor))
    info = server.start()
    try:
        with BlockingClient(info, timeout_s=600) as client:
            client.connect()
            start = time.perf_counter()
            for i in range(n_jobs):
                client.submit(f"{tag}-{i}", KIND, dict(params, gpu_wait_s=gpu_wait, seed=i), inputs)
            for i in range(n_jobs):
                result = client.wait_job(f"{tag}-{i}", timeout_s=600, keep_arrays=False)
                if result.state != "done":
                    raise RuntimeError(f"job {tag}-{i} ended {result.state}: {result.error}")
            return n_jobs / (time.perf_counter() - start)
    finally:
        server.stop()


def first_frame_seconds(jobs_dir: Path, executor, repeats: int, tag: str) -> float:
    """Median seconds from ``job.submit`` to the first ``result.chunk`` of the ``points`` stream."""
    from backend.server import Server, ServerConfig
    from protocol.client import BlockingClient
    from protocol.messages import ResultChunk

    params, inputs = shot()
    server = Server(ServerConfig(jobs_dir=jobs_dir, connection_file=jobs_dir.parent / f"{tag}.json",
                                 executor=executor))
    info = server.start()
    times = []
    try:
        with BlockingClient(info, timeout_s=120) as client:
            client.connect()
            for i in range(repeats + 1):  # the first run warms the worker (imports, caches): not counted
                job_id = f"{tag}-{i}"
                start = time.perf_counter()
                client.submit(job_id, KIND, dict(params, seed=100 + i), inputs)
                while True:
                    event = client.next_event(timeout_s=120)
                    if event is None:
                        raise RuntimeError(f"no first frame from {job_id}")
                    if isinstance(event.message, ResultChunk) and event.job_id == job_id:
                        break
                if i:
                    times.append(time.perf_counter() - start)
                client.wait_job(job_id, timeout_s=120, keep_arrays=False)
    finally:
        server.stop()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--gpu-wait", type=float, default=1.0, help="simulated GPU seconds per job")
    parser.add_argument("--repeats", type=int, default=3, help="first-frame measurements per executor")
    args = parser.parse_args()

    os.environ.setdefault("RECAST4D_GPU_PROBE", "0")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(HERE))
    import cluster  # noqa: F401  (this file as a module registers the kind: workers import it by that name)
    import ray

    from backend.executors import ExecutorOptions
    from backend.jobs import load_job_kind_modules

    load_job_kind_modules()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, namespace="recast4d", log_to_driver=False)
    try:
        def on_ray(workers: int) -> ExecutorOptions:
            return ExecutorOptions(kind="ray", workers=workers, gpus_per_worker=0, pool="recast4d-bench")

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            throughput(root / "warm", on_ray(2), 2, 0.0, "warm")  # both workers import the pipeline once
            one = throughput(root / "one", on_ray(1), args.jobs, args.gpu_wait, "one")
            two = throughput(root / "two", on_ray(2), args.jobs, args.gpu_wait, "two")
            first_ray = first_frame_seconds(root / "ff-ray", on_ray(1), args.repeats, "ffray")
            first_local = first_frame_seconds(root / "ff-local", ExecutorOptions(), args.repeats, "fflocal")
    finally:
        ray.shutdown()
    print(json.dumps({
        "bench": "cluster", "unit": "jobs/s", "value": round(two, 3), "baseline": round(one, 3),
        "ratio": round(two / one, 3), "device": "cpu (2 Ray workers, num_gpus=0)", "goal": ">= 1.6",
        "jobs": args.jobs, "gpu_wait_s": args.gpu_wait,
        "first_frame_s_ray": round(first_ray, 3), "first_frame_s_inprocess": round(first_local, 3),
        "first_frame_ratio_ray_vs_inprocess": round(first_ray / first_local, 3),
    }))


if __name__ == "__main__":
    main()
else:  # imported as module "cluster" (by main() and by the Ray workers): register the kind
    register()
