"""Security basics, checked on the source itself.

Weights and checkpoints are loaded only through safetensors or
``torch.load(weights_only=True)``: unpickling a file from a user, a bucket or a hub
runs arbitrary code. Credentials come from the standard AWS chain and are never
logged. The scanner is tested on snippets first, so a clean result means something.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [ROOT / "platform" / "distilray", ROOT / "jobs", ROOT / "bench"]
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
PICKLE_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "joblib", "_pickle"}
# Classes whose from_pretrained reads weights (not configs, tokenizers or processors).
MODEL_CLASS = re.compile(r"(^AutoModel\w*|Model|For\w+)$")


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value
        for k in call.keywords
    )


def env_secret_reads(node: ast.AST) -> list[str]:
    """Secret-looking environment variables read anywhere inside ``node``, and
    ``os.environ`` itself where it is used whole (dumping the environment)."""
    names, bases = [], set()
    for sub in ast.walk(node):
        key = None
        if isinstance(sub, ast.Subscript) and dotted(sub.value) == "os.environ":
            key = sub.slice
            bases.add(id(sub.value))
        elif isinstance(sub, ast.Call) and dotted(sub.func) in {"os.environ.get", "os.getenv"}:
            key = sub.args[0] if sub.args else None
            bases.add(id(sub.func.value))
        if isinstance(key, ast.Constant) and SECRET_NAME.search(str(key.value)):
            names.append(key.value)
    for sub in ast.walk(node):
        if dotted(sub) == "os.environ" and id(sub) not in bases:
            names.append("os.environ")
    return names


def is_log_call(call: ast.Call) -> bool:
    name = dotted(call.func)
    if name == "print":
        return True
    return (
        isinstance(call.func, ast.Attribute)
        and call.func.attr in LOG_METHODS
        and ("log" in dotted(call.func.value).lower())
    )


def loads_weights_without_safetensors(call: ast.Call) -> bool:
    """``<Model>.from_pretrained(...)`` not saying ``use_safetensors=True``.

    A call passing ``**kwargs`` is given the benefit of the doubt (the loader in
    ``models/resolve.py`` builds its keywords in a dict).
    """
    name = dotted(call.func)
    if not name.endswith(".from_pretrained"):
        return False
    if not MODEL_CLASS.search(name.removesuffix(".from_pretrained").split(".")[-1]):
        return False
    star = any(k.arg is None for k in call.keywords)
    return not star and not keyword_is(call, "use_safetensors", True)


def findings(source: str) -> list[str]:
    """Unsafe deserialisation and secret logging in one module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [module] if module else [a.name for a in node.names]
            if any(n and n.split(".")[0] in PICKLE_MODULES for n in names):
                found.append(f"line {node.lineno}: imports a pickle module")
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        is_torch_load = name == "torch.load" or name.endswith(".torch.load")
        if is_torch_load and not keyword_is(node, "weights_only", True):
            found.append(f"line {node.lineno}: torch.load without weights_only=True")
        if name.split(".")[0] in PICKLE_MODULES:
            found.append(f"line {node.lineno}: {name}")
        if name.endswith(("np.load", "numpy.load")) and keyword_is(node, "allow_pickle", True):
            found.append(f"line {node.lineno}: numpy.load(allow_pickle=True)")
        if keyword_is(node, "use_safetensors", False):
            found.append(f"line {node.lineno}: use_safetensors=False")
        elif loads_weights_without_safetensors(node):
            found.append(f"line {node.lineno}: from_pretrained without use_safetensors=True")
        if keyword_is(node, "trust_remote_code", True):
            found.append(f"line {node.lineno}: trust_remote_code=True")
        if is_log_call(node):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                for secret in env_secret_reads(arg):
                    found.append(f"line {node.lineno}: logs {secret}")
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch\nstate = torch.load(path)",
        "import torch\nstate = torch.load(path, weights_only=False)",
        "import pickle\nobj = pickle.load(f)",
        "from pickle import loads",
        "import numpy as np\nx = np.load(p, allow_pickle=True)",
        "m = Model.from_pretrained(p, use_safetensors=False)",
        "m = WhisperForConditionalGeneration.from_pretrained(folder, dtype=dtype)",
        "m = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(p)",
        "m = AutoModel.from_pretrained(p, trust_remote_code=True)",
        "logger.info('key %s', os.environ['AWS_SECRET_ACCESS_KEY'])",
        "logging.debug(f\"token={os.environ.get('RAY_AUTH_TOKEN')}\")",
        "print(os.getenv('DISTILRAY_API_KEY'))",
        "log.info('env: %s', dict(os.environ))",
    ],
)
def test_scanner_flags_unsafe_code(snippet):
    assert findings(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "state = torch.load(path, weights_only=True, map_location='cpu')",
        "from safetensors.torch import load_file\nstate = load_file(path)",
        "logger.info('endpoint %s', os.environ.get('AWS_ENDPOINT_URL'))",
        "key = os.environ.get('DISTILRAY_API_KEY')  # read, never logged",
        "m = WhisperForConditionalGeneration.from_pretrained(p, use_safetensors=True)",
        "m = WhisperForConditionalGeneration.from_pretrained(p, **kwargs)",
        "proc = WhisperProcessor.from_pretrained(p)\ncfg = GenerationConfig.from_pretrained(p)",
    ],
)
def test_scanner_accepts_safe_code(snippet):
    assert findings(snippet) == []


def test_library_source_has_no_unsafe_loading_or_secret_logging():
    files = [p for d in SCANNED if d.exists() for p in sorted(d.rglob("*.py"))]
    assert len(files) > 10
    problems = [
        f"{path.relative_to(ROOT)} {msg}" for path in files for msg in findings(path.read_text())
    ]
    assert not problems, "\n".join(problems)


def test_pytorch_bin_only_model_folder_is_refused(tmp_path, tiny_random):
    """A folder whose weights exist only as a pickle (pytorch_model.bin) is not loaded."""
    from distilray.errors import ModelLoadError
    from distilray.models import load_whisper

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_random, folder)
    for weights in folder.glob("*.safetensors*"):
        weights.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even a real pickle")
    with pytest.raises(ModelLoadError, match=r"(?i)safetensors"):
        load_whisper(str(folder))


def test_pickled_student_checkpoint_is_refused(tmp_path, tiny_random):
    """A training checkpoint whose weights exist only as a pickle is not loaded."""
    from distilray.distill.checkpoint import load_student
    from distilray.errors import ModelLoadError

    folder = tmp_path / "checkpoint"
    shutil.copytree(tiny_random, folder)
    for weights in folder.glob("*.safetensors*"):
        weights.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even a real pickle")
    with pytest.raises(ModelLoadError, match=r"(?i)safetensors"):
        load_student(folder)
