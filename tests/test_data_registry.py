"""Registry: pinned URLs, mirror-then-cache lookup, schema checks, clear errors offline."""

from __future__ import annotations

import pandas as pd
import pytest

from chronos_core.data import registry
from chronos_core.errors import ChronosError


def test_every_manifest_table_is_registered_with_a_pinned_url():
    kinds = {s.kind for s in registry.SOURCES.values()}
    assert {
        "epoch_time",
        "convergence",
        "probe_batch",
        "eval_records",
        "a100_runs",
        "a100_agg",
        "gpu_specs",
    } <= kinds
    neusight = [n for n in registry.SOURCES if n.startswith("neusight-")]
    assert len(registry.SOURCES) == 22 + len(neusight) + 1  # + XLA's B200 GEMM table
    assert len([n for n in neusight if registry.SOURCES[n].kind == "kernels"]) == 16 * 5 + 5
    for src in registry.SOURCES.values():
        assert len(src.commit) == 40 and src.commit in src.url
        assert src.url.startswith("https://raw.githubusercontent.com/")
        assert " " not in src.url  # "Probe Batch Convergence" is percent-encoded
        assert src.description and (src.required_columns or src.kind in registry.TEXT_KINDS)


def test_unknown_source_names_the_value_and_the_known_ones():
    with pytest.raises(ChronosError, match=r"Unknown data source 'nope'\. Known: .*chronos-time-cnn"):
        registry.get_source("nope")


def test_every_source_reads_from_the_mirror_with_its_schema(mirror):
    for name, src in registry.SOURCES.items():
        if src.kind in registry.TEXT_KINDS:
            assert "DP TIME-BUDGET" in registry.read_text(name) or registry.read_text(name).strip()
            continue
        frame = registry.read(name)
        assert len(frame) > 0, name
        assert str(registry.path(name)).startswith(str(mirror))


def test_missing_data_without_network_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRONOS_DATA_MIRROR", str(tmp_path / "no-mirror"))
    monkeypatch.setenv("CHRONOS_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ChronosError, match="CHRONOS_DATA_MIRROR") as err:
        registry.read("chronos-time-cnn")
    assert "\n" not in str(err.value)


def test_cache_is_read_when_no_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRONOS_DATA_MIRROR", str(tmp_path / "no-mirror"))
    monkeypatch.setenv("CHRONOS_CACHE_DIR", str(tmp_path / "cache"))
    src = registry.get_source("prenet-gpus")
    cached = tmp_path / "cache" / "data" / src.cache_relpath
    cached.parent.mkdir(parents=True)
    pd.DataFrame({c: [1] for c in src.required_columns}).to_csv(cached, index=False)
    assert registry.path("prenet-gpus") == cached
    assert registry.sources_table().set_index("name").loc["prenet-gpus", "available"] == "cache"


def test_schema_check_rejects_a_file_missing_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRONOS_DATA_MIRROR", str(tmp_path))
    src = registry.get_source("a100-runs-agg")
    target = tmp_path / src.mirror_path
    target.parent.mkdir(parents=True)
    pd.DataFrame({"depth": [2]}).to_csv(target, index=False)
    with pytest.raises(ChronosError, match="lacks columns"):
        registry.read("a100-runs-agg")


def test_fetch_offline_fails_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRONOS_CACHE_DIR", str(tmp_path))

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(registry.urllib.request, "urlopen", refuse)
    with pytest.raises(ChronosError, match="Could not download 'prenet-gpus'.*CHRONOS_DATA_MIRROR"):
        registry.fetch("prenet-gpus")
    assert not list(tmp_path.rglob("*.csv"))  # nothing half-written


def test_fetch_writes_the_download_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRONOS_CACHE_DIR", str(tmp_path))
    src = registry.get_source("prenet-gpus")
    body = pd.DataFrame({c: [1] for c in src.required_columns}).to_csv(index=False).encode()

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return body

    monkeypatch.setattr(registry.urllib.request, "urlopen", lambda url, timeout: Response())
    path = registry.fetch("prenet-gpus")
    assert path == tmp_path / "data" / src.cache_relpath and path.read_bytes() == body
