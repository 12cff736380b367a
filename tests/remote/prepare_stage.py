"""A pipeline's data stage: write the prepared training data (100 rows of four features
and a label, the same every time) to ``data/prepared.csv``, the file the training stage
reads. The DVC tests copy it into their folders as ``prepare.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def main() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    out = Path("data/prepared.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(out, np.column_stack([x, y]), delimiter=",", fmt="%.6f")
    print(f"prepared {len(y)} rows")


if __name__ == "__main__":
    main()
