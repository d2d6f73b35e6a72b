from __future__ import annotations

import subprocess
import sys

import pcmodel


def test_all_is_sorted_and_complete() -> None:
    assert pcmodel.__all__ == sorted(pcmodel.__all__)
    public = {
        name
        for name, value in vars(pcmodel).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("pcmodel")
    }
    public.add("workloads")
    assert public <= set(pcmodel.__all__) | {"annotations"}
    for name in pcmodel.__all__:
        assert hasattr(pcmodel, name), name


def test_import_pcmodel_stays_light() -> None:
    code = (
        "import sys, pcmodel; "
        "heavy = sorted(m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == ""
