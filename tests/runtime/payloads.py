"""Hostile model folders, as a tenant's editor could upload them.

Each code-bearing model runs :data:`PROBE` when it is loaded and when it predicts: it
tries to write a marker file on the host, open a socket to the service, read another
tenant's files and the service's database, and lists the ``MATIH_*``/``AWS_*``
variables it can see. Its predictions are the row sums of its input, with what the
probe found, so a test can tell that it ran, where, and that it still scores right.
"""

from __future__ import annotations

import json
import pickle
import shutil
import textwrap
from pathlib import Path
from typing import Any

import yaml

PROBE = textwrap.dedent(
    """
    import json, os, socket

    def probe(cfg):
        found = {"ran": True, "pid": os.getpid()}
        try:
            with open(cfg["marker"], "w") as f:
                f.write("executed")
            found["marker_written"] = True
        except OSError as exc:
            found["marker_written"] = False
        try:
            socket.create_connection(("127.0.0.1", cfg["port"]), timeout=2).close()
            found["socket"] = "connected"
        except OSError as exc:
            found["socket"] = type(exc).__name__
        for key, path in (("other_tenant", cfg["other"]), ("database", cfg["db"])):
            try:
                if os.path.isdir(path):
                    found[key] = sorted(os.listdir(path))
                else:
                    with open(path, "rb") as f:
                        found[key] = len(f.read())
            except OSError as exc:
                found[key] = type(exc).__name__
        found["env"] = sorted(k for k in os.environ if k.startswith(("MATIH_", "AWS_")))
        return found

    class ProbeModel:
        def __init__(self, cfg):
            self.cfg = cfg
            probe(cfg)  # on load, too

        def predict(self, frame, *args, **kwargs):
            found = probe(self.cfg)
            rows = frame.to_numpy(dtype=float)
            return [{"y": float(r.sum()), "probe": json.dumps(found)} for r in rows]
    """
)


def _mlmodel(folder: Path, flavors: dict[str, Any]) -> None:
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
    (folder / "requirements.txt").write_text("scikit-learn\n")


def loader_module_model(folder: Path, cfg: dict[str, Any]) -> Path:
    """A pyfunc whose ``loader_module`` is a ``.py`` file shipped in ``code/``."""
    (folder / "code").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "data" / "cfg.json").write_text(json.dumps(cfg))
    (folder / "code" / "probe_loader.py").write_text(
        PROBE
        + textwrap.dedent(
            """
            def _load_pyfunc(path):
                with open(path) as f:
                    return ProbeModel(json.load(f))
            """
        )
    )
    _mlmodel(
        folder,
        {
            "python_function": {
                "loader_module": "probe_loader",
                "code": "code",
                "data": "data/cfg.json",
            },
            # The framework check reads the flavours: an attacker names one.
            "sklearn": {"pickled_model": "data/cfg.json", "serialization_format": "pickle"},
        },
    )
    return folder


class _Evil:
    """Unpickles by evaluating the probe: what any pickle can do."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        source = PROBE + f"\nMODEL = ProbeModel({self.cfg!r})\n"
        expr = f"(lambda ns: (exec({source!r}, ns), ns['MODEL'])[1])({{}})"
        return eval, (expr,)


def pickle_model(folder: Path, cfg: dict[str, Any]) -> Path:
    """An sklearn-flavoured model whose ``model.pkl`` runs code when unpickled."""
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(_Evil(cfg)))
    _mlmodel(
        folder,
        {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"},
            "sklearn": {"pickled_model": "model.pkl", "serialization_format": "pickle"},
        },
    )
    return folder


def python_model(folder: Path, cfg: dict[str, Any]) -> Path:
    """A cloudpickled ``PythonModel`` whose class travels by value (as a notebook's does)."""
    import cloudpickle
    import mlflow.pyfunc

    namespace: dict[str, Any] = {"__name__": "tenant_notebook"}
    exec(
        PROBE
        + textwrap.dedent(
            """
            import mlflow.pyfunc

            class Wrapped(mlflow.pyfunc.PythonModel):
                def __init__(self, cfg):
                    self.cfg = cfg

                def load_context(self, context):
                    self.inner = ProbeModel(self.cfg)

                def predict(self, context, model_input, params=None):
                    return self.inner.predict(model_input)
            """
        ),
        namespace,
    )
    model = namespace["Wrapped"](cfg)
    assert cloudpickle  # the class is defined outside any module: pickled by value
    mlflow.pyfunc.save_model(str(folder), python_model=model, pip_requirements=["scikit-learn"])
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    meta["flavors"]["sklearn"] = {"pickled_model": "python_model.pkl"}
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    return folder


def with_mlmodel(source: Path, dest: Path, edit: Any) -> Path:
    """A copy of a model folder whose MLmodel ``edit(meta)`` changed."""
    shutil.copytree(source, dest)
    meta = yaml.safe_load((dest / "MLmodel").read_text())
    edit(meta)
    (dest / "MLmodel").write_text(yaml.safe_dump(meta))
    return dest


def crafted_tree_model(folder: Path) -> Path:
    """A skops DecisionTree whose root points at node 10**9: only sklearn's own classes,
    yet scoring it reads far outside the tree (a segfault, or another's memory).

    Saved without an input example or signature: MLflow would score it to infer one.
    """
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    import skops.io
    from sklearn.tree import DecisionTreeClassifier

    x = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 3)), columns=["a", "b", "c"])
    tree = DecisionTreeClassifier(max_depth=3).fit(x, (x.a > 0).astype(int))
    state = tree.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = nodes["right_child"][0] = 10**9
    tree.tree_.__setstate__({**state, "nodes": nodes})
    mlflow.sklearn.save_model(
        tree,
        str(folder),
        serialization_format="skops",
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(tree)),
        pip_requirements=["scikit-learn"],
    )
    return folder
