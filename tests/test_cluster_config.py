"""cluster.yaml, the KubeRay manifests under deploy/ and the README's cluster section checked offline.

Ray's schema validates the launcher config's structure but not the provider or the
``node_config`` blocks (those go to EC2 as-is), so node configs are also checked
against botocore's own model of ``RunInstances``: a misspelt key or an unknown
instance type fails here instead of minutes into ``ray up``.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
IMAGE_TAG = f"{ray.__version__}-py311-gpu"
# GPU instance families sized for a large-v3 teacher (>= 24 GB per GPU).
GPU_FAMILIES = {"g5", "g6", "g6e", "p4d", "p4de", "p5", "p5e"}


def load_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def shape_errors(shape, value, where: str) -> list[str]:
    """Differences between ``value`` and a botocore input shape (keys, types, enums)."""
    if shape.type_name == "structure":
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        errors = []
        for key, sub in value.items():
            if key not in shape.members:
                errors.append(f"{where}.{key}: not a RunInstances parameter")
            else:
                errors += shape_errors(shape.members[key], sub, f"{where}.{key}")
        return errors
    if shape.type_name == "list":
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [
            e for i, v in enumerate(value) for e in shape_errors(shape.member, v, f"{where}[{i}]")
        ]
    enum = getattr(shape, "enum", None)
    if enum and value not in enum:
        return [f"{where}: {value!r} is not one of EC2's values"]
    return []


# --- cluster.yaml ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load_yaml("cluster.yaml")


def test_cluster_yaml_passes_rays_schema_and_checks(cluster):
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    jsonschema.validate(cluster, ray_schema())
    # What `ray up` does: merge the AWS defaults, then validate the result.
    validate_config(prepare_config(cluster))


def test_schema_rejects_a_misspelt_key(cluster):
    import jsonschema

    broken = dict(cluster, idle_timeout_minute=cluster["idle_timeout_minutes"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ray_schema())


def test_node_configs_are_valid_run_instances_parameters(cluster):
    import botocore.session

    shape = (
        botocore.session.get_session()
        .get_service_model("ec2")
        .operation_model("RunInstances")
        .input_shape
    )
    errors = []
    for name, node_type in cluster["available_node_types"].items():
        assert "InstanceType" in node_type["node_config"], f"{name} has no InstanceType"
        errors += shape_errors(shape, node_type["node_config"], name)
    assert not errors, errors
    # The checker itself catches the mistakes it is here for.
    assert shape_errors(shape, {"InstanceTyp": "g5.xlarge"}, "x")
    assert shape_errors(shape, {"InstanceType": "g5.xlarg"}, "x")


def test_node_types_head_gpu_and_cpu_workers(cluster):
    assert cluster["provider"]["type"] == "aws"
    assert cluster["provider"]["region"]
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "no tasks on the head"
    workers = {k: v for k, v in types.items() if k != cluster["head_node_type"]}
    families = {k: v["node_config"]["InstanceType"].split(".")[0] for k, v in workers.items()}
    gpu = [k for k, fam in families.items() if fam in GPU_FAMILIES]
    cpu = [k for k, fam in families.items() if fam.startswith(("c6i", "c7i", "c6a", "c7a"))]
    assert gpu and cpu, families
    for name in gpu:
        assert types[name]["min_workers"] == 0, "GPU nodes must scale to zero"
        assert types[name]["max_workers"] >= 1
    assert cluster["max_workers"] >= max(t.get("max_workers", 0) for t in workers.values())
    assert 1 <= cluster["idle_timeout_minutes"] <= 60


def test_cluster_image_matches_installed_ray(cluster):
    assert cluster["docker"]["image"] == f"rayproject/ray:{IMAGE_TAG}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'ray[data,train,serve,default]=={ray.__version__}"' in pyproject


def test_cluster_installs_the_synced_package(cluster):
    mounts = cluster["file_mounts"]
    code_dir = next(remote for remote, local in mounts.items() if local == ".")
    commands = " ; ".join(cluster["setup_commands"])
    assert f"pip install --quiet -e {code_dir}" in commands
    # The torch pin is the Makefile's, so the cluster runs what the tests ran.
    torch_spec = re.search(r"TORCH_SPEC \?= (\S+)", (ROOT / "Makefile").read_text()).group(1)
    assert torch_spec in commands
    assert ".venv" in cluster["rsync_exclude"]


def test_cluster_uses_token_auth_everywhere(cluster):
    assert any(remote.endswith(".ray/auth_token") for remote in cluster["file_mounts"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in cluster[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key


def test_large_v3_stages_fit_the_gpu_workers(cluster):
    """Each GPU actor / Ray Train worker (its CPUs + 1 GPU) fits one GPU node."""
    gpu_node = cluster["available_node_types"]["gpu_worker"]
    cpus, slots = gpu_node["resources"]["CPU"], gpu_node["max_workers"]
    assert gpu_node["resources"]["GPU"] == 1
    scaling = load_yaml("configs/large-v3/distill.yaml")["scaling"]
    assert scaling["cpus_per_worker"] <= cpus and scaling["num_workers"] <= slots
    label = load_yaml("configs/large-v3/label.yaml")
    assert label["cpus_per_actor"] <= cpus and label["max_actors"] <= slots
    runtime = load_yaml("configs/large-v3/eval.yaml")["runtime"]
    assert runtime["cpus_per_actor"] <= cpus and runtime["num_actors"] <= slots


def test_large_v3_stages_hand_their_outputs_on():
    """On the cluster each stage reads what the one before wrote (all on s3://)."""
    label = load_yaml("configs/large-v3/label.yaml")
    init = load_yaml("configs/large-v3/init_student.yaml")
    distill = load_yaml("configs/large-v3/distill.yaml")
    evaluate = load_yaml("configs/large-v3/eval.yaml")
    assert distill["data"]["train"].rstrip("/") == label["output"].rstrip("/")
    assert distill["model"]["student"] == init["out"]
    assert label["teacher"] == init["teacher"] == distill["model"]["teacher"]
    assert evaluate["models"]["teacher"] == label["teacher"]
    assert evaluate["models"]["student"] == distill["run"]["export_to"], (
        "configs/large-v3/eval.yaml evaluates a student distill.yaml does not export"
    )
    for uri in (label["input"], label["output"], init["out"], distill["run"]["storage"]):
        assert uri.startswith("s3://"), uri


# --- deploy/ (KubeRay) ----------------------------------------------------------------


def containers(cluster_spec: dict) -> list[dict]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def check_ray_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"] == ray.__version__
    images = [c["image"] for c in containers(spec)]
    assert images and all(image.endswith(f":{IMAGE_TAG}") for image in images), images
    assert spec["authOptions"]["mode"] == "token"


def test_dockerfile_builds_on_the_matching_ray_image():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{IMAGE_TAG}" in text
    assert "pip install --no-cache-dir -e" in text


def test_rayjob_runs_existing_jobs_and_configs():
    job = load_yaml("deploy/rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    check_ray_cluster_spec(job["spec"]["rayClusterSpec"])
    gpu = [g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu and gpu[0]["minReplicas"] == 0
    commands = [shlex.split(part) for part in job["spec"]["entrypoint"].split("&&")]
    assert len(commands) >= 1
    for argv in commands:
        assert argv[0] == "python" and argv[1].startswith("jobs/")
        assert (ROOT / argv[1]).is_file(), f"{argv[1]} does not exist"
        config = argv[argv.index("--config") + 1]
        assert (ROOT / config).is_file(), f"{config} does not exist"
    yaml.safe_load(job["spec"]["runtimeEnvYAML"])


def test_rayservice_serves_serve_config_yaml():
    service = load_yaml("deploy/rayservice.yaml")
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    check_ray_cluster_spec(service["spec"]["rayClusterConfig"])
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    expected = load_yaml("serve_config.yaml")
    assert served["applications"] == expected["applications"], (
        "deploy/rayservice.yaml serveConfigV2 differs from serve_config.yaml: copy it over"
    )
    assert served == expected


# --- README: Running on a cluster -------------------------------------------------------------------


def test_cluster_docs_name_existing_scripts_and_configs():
    text = (ROOT / "README.md").read_text()
    commands = re.findall(r"python (jobs/\S+\.py) --config ([^\s`]+)", text)
    assert len(commands) >= 4, "README.md should show every stage"
    for script, config in commands:
        assert (ROOT / script).is_file(), f"README.md names missing {script}"
        assert (ROOT / config).is_file(), f"README.md names missing {config}"
    for file in (
        "cluster.yaml",
        "serve_config.yaml",
        "deploy/rayjob.yaml",
        "deploy/rayservice.yaml",
    ):
        assert file in text


# --- deploy/ against configs/large-v3: every stage's workers fit the pods -------------

OBJECT_STORE_SHARE = 0.3  # Ray's default object store: 30 % of a node's memory
LARGE_V3_MELS = 128  # large-v3's log-mel bins (decode tasks hold its features)
# Host memory a GPU worker needs besides what a config declares: a large-v3 teacher is
# ~6 GiB of float32 weights while it loads (before the cast), plus the student,
# optimizer state gathered for checkpoints and prefetched batches.
GPU_WORKER_BASE_GIB = 16
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(value) -> float:
    """A Kubernetes quantity as a number: ``"500m"`` CPU → 0.5, ``"28Gi"`` → bytes."""
    text = str(value)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    for suffix, factor in _UNITS.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def worker_pods(cluster_spec: dict) -> dict[str, tuple[dict, int]]:
    """Ray resources of each worker group's pod (as Ray sees them) and its max pods."""
    pods = {}
    for group in cluster_spec["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        params = group.get("rayStartParams") or {}
        memory = quantity(limits["memory"])
        resources = {
            "CPU": quantity(params.get("num-cpus", limits["cpu"])),
            "GPU": quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0))),
            "memory": memory * (1 - OBJECT_STORE_SHARE),
        }
        pods[group["groupName"]] = (resources, group["maxReplicas"])
    return pods


def capacity(pods: dict[str, tuple[dict, int]], demand: dict) -> int:
    """How many workers asking for ``demand`` the cluster holds at its largest."""
    total = 0
    for resources, max_pods in pods.values():
        per_pod = min(
            (int(resources.get(k, 0) // v) for k, v in demand.items() if v > 0), default=0
        )
        total += per_pod * max_pods
    return total


def large_v3_demands() -> dict[str, tuple[dict, int]]:
    """Each stage's worker (Ray resources) and how many run at once, from configs/large-v3."""
    from distilray.config import load_config
    from distilray.distill.config import DistillConfig
    from distilray.evaluation.config import EvalConfig
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import decode_task_memory

    label = load_config(LabelConfig, ROOT / "configs/large-v3/label.yaml")
    distill = load_config(DistillConfig, ROOT / "configs/large-v3/distill.yaml")
    evaluate = load_config(EvalConfig, ROOT / "configs/large-v3/eval.yaml")
    base = GPU_WORKER_BASE_GIB * 2**30
    cache = distill.train.encoder_cache_gb * 2**30
    return {
        "label teacher actor": (
            {"CPU": label.cpus_per_actor, "GPU": label.num_gpus_per_actor or 1, "memory": base},
            label.max_actors,
        ),
        "label decode task": ({"CPU": 1, "memory": decode_task_memory(label, LARGE_V3_MELS)}, 1),
        "distill worker": (
            {"CPU": distill.scaling.cpus_per_worker, "GPU": 1, "memory": base + cache},
            distill.scaling.num_workers,
        ),
        "eval actor": (
            {
                "CPU": evaluate.runtime.cpus_per_actor,
                "GPU": evaluate.runtime.gpus_per_actor,
                "memory": base,
            },
            evaluate.runtime.num_actors,
        ),
    }


def test_rayjob_pods_fit_every_large_v3_stage():
    pods = worker_pods(load_yaml("deploy/rayjob.yaml")["spec"]["rayClusterSpec"])
    short = {
        name: f"{capacity(pods, demand)} of {count} fit ({demand})"
        for name, (demand, count) in large_v3_demands().items()
        if capacity(pods, demand) < count
    }
    assert not short, short


def test_fit_check_catches_the_pod_that_never_schedules():
    """The manifest as it was (4-CPU GPU pods) cannot hold distill's 8-CPU workers."""
    spec = load_yaml("deploy/rayjob.yaml")["spec"]["rayClusterSpec"]
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "4"
    demand, count = large_v3_demands()["distill worker"]
    assert capacity(worker_pods(spec), demand) == 0 < count


def serve_demands(serve_config: dict) -> dict[str, tuple[dict, int]]:
    """Each deployment's replica (Ray resources) and its most replicas."""
    demands = {}
    for app in serve_config["applications"]:
        for deployment in app["deployments"]:
            options = deployment.get("ray_actor_options", {})
            replicas = deployment.get("autoscaling_config", {}).get(
                "max_replicas", deployment.get("num_replicas", 1)
            )
            demand = {
                "CPU": options.get("num_cpus", 1),
                "GPU": options.get("num_gpus", 0),
                "memory": options.get("memory", 0),
            }
            demands[deployment["name"]] = (demand, replicas)
    return demands


def test_rayservice_pods_fit_serve_config():
    pods = worker_pods(load_yaml("deploy/rayservice.yaml")["spec"]["rayClusterConfig"])
    demands = serve_demands(load_yaml("serve_config.yaml"))
    assert demands, "serve_config.yaml has no deployments"
    short = {
        name: f"{capacity(pods, demand)} of {count} replicas fit ({demand})"
        for name, (demand, count) in demands.items()
        if capacity(pods, demand) < count
    }
    assert not short, short
    # A GPU pod holds a model replica and an ingress replica side by side.
    gpu_pod = pods["gpu"][0]
    model, ingress = demands["WhisperModel"][0], demands["APIIngress"][0]
    assert model["CPU"] + ingress["CPU"] <= gpu_pod["CPU"]
