"""nbval settings for the course notebooks (`make nbtest`).

stderr is never compared: libraries print warnings there (bitsandbytes, transformers) that
come and go with versions and import order, and tqdm bars go there too. Only stdout and
rich outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` are compared (after
notebooks/sanitize.cfg), and every cell must run without error.
"""

import nbval.plugin as _nbval

_transform = _nbval.transform_streams_for_comparison


def _without_stderr(outputs):
    kept = [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    return _transform(kept)


_nbval.transform_streams_for_comparison = _without_stderr
