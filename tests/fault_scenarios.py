"""Fault-injection scenarios, each run in its own process with its own Ray.

``python tests/fault_scenarios.py SCENARIO --out report.json [options]`` starts a
private Ray (a multi-node ``ray.cluster_utils.Cluster`` where nodes are removed),
runs a real stage, injects the fault while it runs, and writes what it observed as
JSON. tests/test_faults.py runs these and asserts on the report; keeping each in a
process of its own means no test shares (or breaks) the session's Ray instance.
The parent sets ``RAY_TMPDIR`` to a private folder so nothing here touches another
Ray on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import threading
import time
from pathlib import Path

logger = logging.getLogger("fault_scenarios")

MIB = 1024 * 1024
# Declare a node dead after ~3 s without heartbeats instead of ~30 s.
FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str, every_s: float = 0.25):
    """Poll ``predicate`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class Background:
    """Run a stage in a thread so the main thread can inject faults (Ray's node
    management installs signal handlers, which only the main thread may do)."""

    def __init__(self, fn, *args):
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn, *args) -> None:
        try:
            self.result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in join()
            self.error = exc

    def running(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout_s: float):
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise TimeoutError(f"stage still running after {timeout_s:.0f}s")
        if self.error is not None:
            raise self.error
        return self.result


def start_cluster(worker_cpus: list[float]):
    """A head that runs only drivers and control actors (0 CPUs) plus CPU worker nodes."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 128 * MIB,
            # Ray Train's placement-group cleaner asks the State API (the dashboard).
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(),
            "dashboard_agent_listen_port": free_port(),
            "_system_config": FAST_FAILURE_DETECTION,
        },
    )
    workers = [cluster.add_node(num_cpus=c, object_store_memory=128 * MIB) for c in worker_cpus]
    # Workers resolving address="auto" must find this cluster, not another on the machine.
    ray.init(
        address=cluster.address,
        log_to_driver=True,
        configure_logging=False,
        runtime_env={"env_vars": {"RAY_ADDRESS": cluster.address}},
    )
    cluster.wait_for_nodes()
    return cluster, workers


# --- Labelling and distillation: the node doing the work is lost -----------------------


class NodeSwap:
    """Replace the cluster's only worker node: add a fresh one, then hard-kill the old
    one (as when a spot instance is reclaimed and the autoscaler launches another)."""

    def __init__(self, cluster, node, cpus: float):
        self.cluster, self.node, self.cpus = cluster, node, cpus
        self.at: float | None = None

    def __call__(self, stage: Background, observe):
        """Swap nodes while ``stage`` runs; ``observe()`` taken just before the kill."""
        new = self.cluster.add_node(num_cpus=self.cpus, object_store_memory=128 * MIB)
        seen = observe()
        if not stage.running():  # finished while the new node started: no fault
            return seen
        self.cluster.remove_node(self.node, allow_graceful=False)
        self.at = time.time()
        logger.info("replaced worker node %s with %s", self.node.node_id, new.node_id)
        self.node = new
        return seen


def repeated_manifest(manifest: Path, out: Path, copies: int) -> Path:
    """``copies`` rows per clip of ``manifest`` under distinct ids (more work, same audio)."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(copies):
        for row in rows:
            audio = str((manifest.parent / row["audio"]).resolve())
            lines.append(
                json.dumps({"id": f"{row['id']}-{k}", "audio": audio, "text": row["text"]})
            )
    path = out / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def label_with_node_loss(args, swap: NodeSwap, workdir: Path) -> dict:
    """Label while the worker node is replaced mid-run; the ids written, per shard row."""
    import pyarrow.parquet as pq
    import ray

    import distilray.labelling.progress as label_progress
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling
    from distilray.labelling.shards import list_shards

    manifest = repeated_manifest(Path(args.clips), workdir / "inputs", copies=2)
    total = len(manifest.read_text().splitlines())
    counters = []
    start_counter = label_progress.start_counter

    def watched_counter():
        counters.append(start_counter())
        return counters[-1]

    label_progress.start_counter = watched_counter  # to see how far labelling got
    cfg = LabelConfig(
        input=str(manifest), output=str(workdir / "labels"), teacher=args.teacher,
        batch_size=2, prepare_batch_size=2, min_actors=1, max_actors=1, cpus_per_actor=1,
        max_label_length=16, shard_rows=4, progress_every_s=1,
    )  # fmt: skip
    stage = Background(run_labelling, cfg)

    def progress() -> dict | None:
        if not counters or not stage.running():
            return None
        return ray.get(counters[0].snapshot.remote(), timeout=30)

    wait_for(lambda: (progress() or {}).get("inputs") or not stage.running(), 300, "progress")
    done_at_kill = swap(stage, progress) if stage.running() else None
    result = stage.join(300)
    shards = [pq.read_table(shard, columns=["id"]) for shard in list_shards(cfg.output)]
    ids = [i for table in shards for i in table["id"].to_pylist()]
    return {
        "inputs": total,
        "done_at_kill": done_at_kill and done_at_kill["inputs"],
        "killed_at": swap.at,
        "ids_written": ids,
        "input_ids": [json.loads(line)["id"] for line in manifest.read_text().splitlines()],
        "errors": result.run["errors"],
        "output": cfg.output,
    }


def checkpoint_steps(run_dir: Path) -> dict[int, float]:
    """``{step: mtime}`` of the checkpoints in a Ray Train run folder."""
    found = {}
    for folder in run_dir.glob("checkpoint_step_*"):
        found[int(folder.name.rsplit("_", 1)[-1])] = folder.stat().st_mtime
    return found


def distill_with_node_loss(args, swap: NodeSwap, workdir: Path, labels: str) -> dict:
    """Distil while the node of the (only) training worker is replaced mid-run."""
    from distilray.distill.config import DistillConfig
    from distilray.distill.trainer import run_distillation
    from distilray.student import StudentInitConfig, init_student

    student = workdir / "student-init"
    init_student(StudentInitConfig(teacher=args.teacher, decoder_layers=2, out=str(student)))
    cfg = DistillConfig.model_validate({
        "data": {"train": labels, "wer_threshold": None, "eval": labels, "eval_max_rows": 4},
        "model": {"teacher": args.teacher, "student": str(student)},
        "optim": {"warmup_steps": 2},
        "train": {"max_steps": 9, "batch_size": 1, "eval_every": 3, "eval_batch_size": 4,
                  "eval_max_new_tokens": 8, "shuffle_buffer": None, "feature_batch_size": 4,
                  "torch_threads": 1},
        "scaling": {"num_workers": 1, "use_gpu": False, "cpus_per_worker": 1},
        "run": {"name": "faults", "storage": str(workdir / "train"), "max_failures": 2,
                "export_checkpoint": "latest", "num_to_keep": 10},
    })  # fmt: skip
    run_dir = workdir / "train" / "faults"
    stage = Background(run_distillation, cfg)
    wait_for(lambda: checkpoint_steps(run_dir) or not stage.running(), 300, "a checkpoint", 0.1)
    at_kill = swap(stage, lambda: checkpoint_steps(run_dir)) if stage.running() else {}
    outcome = stage.join(300)
    return {
        "max_steps": cfg.train.max_steps,
        "steps": outcome.steps,
        "killed_at": swap.at,
        "checkpoints_at_kill": at_kill,
        "checkpoints": checkpoint_steps(run_dir),
        "student": outcome.student,
        "student_files": sorted(p.name for p in Path(outcome.student).iterdir()),
    }


def pipeline_scenario(args) -> dict:
    """Label, then distil; each loses its worker node in the middle."""
    import ray

    workdir = Path(args.workdir)
    cluster, (node,) = start_cluster([2])
    swap = NodeSwap(cluster, node, cpus=2)
    report = {"label": label_with_node_loss(args, swap, workdir)}
    report["distill"] = distill_with_node_loss(args, swap, workdir, report["label"]["output"])
    ray.shutdown()
    cluster.shutdown()
    return report


# --- Serve: a model replica is killed ---------------------------------------------------


def wav_clips(manifest: Path) -> list[bytes]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return [(manifest.parent / row["audio"]).read_bytes() for row in rows]


def model_replicas() -> list[str]:
    """Names of the live WhisperModel replica actors."""
    import ray

    return sorted(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and "#WhisperModel#" in a["name"]
    )


def transcribe(client, wav: bytes, retries: int = 0) -> dict:
    """POST one clip; retry 5xx/transport errors ``retries`` times, as a client would."""
    import httpx

    attempts = []
    for _ in range(retries + 1):
        try:
            resp = client.post(
                "/v1/audio/transcriptions", files={"file": ("c.wav", wav, "audio/wav")}
            )
            attempts.append(resp.status_code)
            if resp.status_code == 200:
                return {"text": resp.json()["text"], "attempts": attempts}
        except httpx.HTTPError as exc:
            attempts.append(type(exc).__name__)
        time.sleep(0.5)
    return {"text": None, "attempts": attempts}


def serve_scenario(args) -> dict:
    import httpx
    import ray
    from ray import serve

    from distilray.serving.app import make_app

    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app_args = {"teacher": args.teacher, "torch_threads": 1, "api_key_env": None}
    app = make_app(
        app_args,
        ingress_options={"ray_actor_options": {"num_cpus": 0.25}},
        model_options={"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5}},
    )
    serve.run(app, name="distilray", route_prefix="/")
    clips = wav_clips(Path(args.clips))
    report: dict = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        report["baseline"] = [transcribe(client, wav)["text"] for wav in clips]
        before = model_replicas()
        report["replicas_before"] = before
        # Clients keep sending while one replica is killed.
        during: list[dict] = []
        stop = threading.Event()

        def traffic() -> None:
            i = 0
            while not stop.is_set():
                result = transcribe(client, clips[i % len(clips)], retries=3)
                during.append({"clip": i % len(clips), **result})
                i += 1

        sender = threading.Thread(target=traffic)
        sender.start()
        time.sleep(1.0)
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        report["killed"] = before[0]
        after = wait_for(
            lambda: (r := model_replicas()) and len(r) == len(before) and before[0] not in r and r,
            60,
            "a replacement replica",
        )
        wait_for(
            lambda: serve.status().applications["distilray"].status == "RUNNING",
            60,
            "the app to be RUNNING",
        )
        report["recovery_s"] = time.monotonic() - killed_at
        report["replicas_after"] = after
        time.sleep(1.0)
        stop.set()
        sender.join(timeout=120)
        report["during"] = during
        report["after"] = [transcribe(client, wav)["text"] for wav in clips]
    serve.shutdown()
    return report


SCENARIOS = {"serve": serve_scenario, "pipeline": pipeline_scenario}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--out", required=True, help="JSON report path")
    parser.add_argument("--teacher", help="teacher model folder")
    parser.add_argument("--clips", help="synthetic clips manifest.jsonl")
    parser.add_argument("--workdir", help="scratch folder for outputs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    started = time.monotonic()
    report = SCENARIOS[args.scenario](args)
    report["seconds"] = time.monotonic() - started
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
