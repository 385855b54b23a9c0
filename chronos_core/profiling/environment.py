"""Provenance of a measurement: which machine, which libraries, which code, which command.

Every measured row carries a few of these fields (device, threads, torch version); the full
record goes to the table's JSON sidecar so a reader can tell exactly where numbers came from.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chronos_core.errors import ChronosError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE_KINDS = ("cpu", "cuda", "mps")


def resolve_device(device: str) -> str:
    """Validate a device string ('cpu', 'cuda', 'cuda:1', 'mps') and check it is present here."""
    import torch

    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in DEVICE_KINDS or (index and not index.isdigit()):
        raise ChronosError(f"Unknown device {device!r}. Known: cpu, cuda, cuda:N, mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ChronosError(f"Device {device!r} is not present: torch sees no CUDA GPU on this machine")
        if index and int(index) >= torch.cuda.device_count():
            raise ChronosError(
                f"Device {device!r} is not present: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ChronosError(f"Device {device!r} is not present: torch sees no Apple MPS device here")
    return text


def synchronize(device: str) -> None:
    """Wait for queued accelerator work so that a clock read that follows is honest (no-op on CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device.startswith("mps"):
        torch.mps.synchronize()


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def git_revision() -> str:
    """HEAD commit of the repository, with '+dirty' when the tree has uncommitted changes."""
    rev = _git("rev-parse", "HEAD")
    if rev and _git("status", "--porcelain", "--untracked-files=no"):
        rev += "+dirty"
    return rev or "unknown"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform fallback elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _module_version(name: str) -> str:
    module = sys.modules.get(name)
    if module is None:
        return ""  # not imported by this process: importing TensorFlow just to read a version is slow
    return str(getattr(module, "__version__", ""))


def device_spec(device: str) -> dict[str, Any]:
    """The catalog's spec of the device behind a torch device string, as a dict (empty when unknown)."""
    from chronos_core.catalog.devices import Devices, local_cpu

    if device.startswith("cpu"):
        return local_cpu().as_dict()
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(device)
        canonical = Devices.resolve(name)
        if canonical is not None:
            return Devices.get(canonical).as_dict()
        props = torch.cuda.get_device_properties(device)
        return {
            "name": name,
            "kind": "gpu",
            "sm_count": props.multi_processor_count,
            "memory_gb": props.total_memory / 2**30,
            "compute_capability": f"{props.major}.{props.minor}",
            "source": "torch.cuda.get_device_properties (not in catalog)",
        }
    return {"name": device, "kind": "gpu", "source": "torch (no catalog entry)"}


@dataclass
class Environment:
    """Where and with what a measurement was taken."""

    device: str
    device_name: str
    device_spec: dict[str, Any]
    cpu_model: str
    threads: int
    torch_version: str
    tf_version: str
    cuda_version: str
    cudnn_version: str
    driver_version: str
    python_version: str
    platform: str
    hostname: str
    date_utc: str
    git_revision: str
    command: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row_fields(self) -> dict[str, Any]:
        """The few fields that every measured row repeats (the sidecar has the rest)."""
        return {
            "device": self.device_name,
            "torch_device": self.device,
            "threads": self.threads,
            "torch_version": self.torch_version,
            "cuda_version": self.cuda_version,
            "git_revision": self.git_revision,
        }


def _driver_version() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""


def capture_environment(device: str = "cpu", command: str | None = None, **extra: Any) -> Environment:
    """Record this machine, its libraries, the repo revision and the command for `device`."""
    import torch

    device = resolve_device(device)
    spec = device_spec(device)
    cuda = device.startswith("cuda")
    cudnn = torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None
    return Environment(
        device=device,
        device_name=str(spec.get("name", device)),
        device_spec=spec,
        cpu_model=cpu_model(),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        tf_version=_module_version("tensorflow"),
        cuda_version=str(torch.version.cuda or "") if cuda else "",
        cudnn_version=str(cudnn or ""),
        driver_version=_driver_version() if cuda else "",
        python_version=platform.python_version(),
        platform=platform.platform(),
        hostname=platform.node(),
        date_utc=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        git_revision=git_revision(),
        command=command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        extra=dict(extra),
    )


def device_slug(device: str = "cpu") -> str:
    """Folder name under meta_datasets/ for a device: 'cpu-<model>' for this CPU, the GPU's name else."""
    import re

    name = str(device_spec(resolve_device(device)).get("name", device))
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_provenance(table_path: str | os.PathLike, env: Environment, **details: Any) -> Path:
    """Write `<table>.json` beside `<table>.csv`: the environment plus any details (sweep spec, rows)."""
    path = Path(table_path).with_suffix(".json")
    record = {"table": Path(table_path).name, **env.as_dict(), **details}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # write then rename: never a torn sidecar
    with tmp.open("w") as fh:
        fh.write(json.dumps(record, indent=2, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
