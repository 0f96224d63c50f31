"""GGUF conversion: atomic, done once when runs convert concurrently, and a killed
conversion's leftovers removed by a later one (the conversion itself is faked here)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from curate.models import gguf


def fake_gguf(tmp_path: Path, name: str = "model") -> Path:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(name.encode() * 1000)
    return path


def test_concurrent_conversions_of_one_model_convert_once(tmp_path, monkeypatch):
    calls = []

    def slow_convert(source, destination):
        calls.append(source)
        time.sleep(0.5)
        destination.mkdir(parents=True)
        (destination / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "convert", slow_convert)
    model = fake_gguf(tmp_path)
    results = []
    threads = [threading.Thread(target=lambda: results.append(gguf.converted_gguf_dir(model, tmp_path / "cache")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1 and (results[0] / "config.json").is_file()
    assert [p.name for p in results[0].parent.iterdir() if p.name.endswith(".partial")] == []


KILLED_MID_CONVERSION = """
import os, signal, sys
from pathlib import Path
from curate.models import gguf

def convert(source, destination):
    destination.mkdir(parents=True)
    (destination / "model.safetensors").write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)

gguf.convert = convert
gguf.converted_gguf_dir(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_a_killed_conversion_leaves_nothing_a_later_one_does_not_remove(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    model, other = fake_gguf(tmp_path), fake_gguf(tmp_path, "other")
    converted = cache / "models" / "converted"
    for path in (model, other):
        killed = subprocess.run([sys.executable, "-c", KILLED_MID_CONVERSION, str(path), str(cache)])
        assert killed.returncode == -9
        # one leftover each time: the second conversion removed the first one's
        assert [p.name.split("-")[0] for p in converted.glob(".*.partial")] == [f".{path.stem}"]

    def convert(source, destination):
        destination.mkdir(parents=True)
        (destination / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "convert", convert)
    target = gguf.converted_gguf_dir(model, cache)
    assert (target / "config.json").is_file()
    # the other model's leftover is gone too: nobody converts it now
    assert list(converted.glob(".*.partial")) == []


def test_a_running_conversions_partial_folder_is_left_alone(tmp_path):
    converted = tmp_path / "converted"
    running = converted / ".busy-0123.4242.partial"
    running.mkdir(parents=True)
    with gguf._locked(gguf._lock_file(converted, "busy-0123")):
        assert gguf.remove_stale_partials(converted, held="mine") == []
    assert running.is_dir()
    assert gguf.remove_stale_partials(converted, held="mine") == [running] and not running.exists()
