"""lmms-eval entry point (`lmms_eval.models` group): one `ModelManifest` per casa-eval model name.

lmms-eval imports this on every `import lmms_eval.models`, so it must stay light (no torch).
"""

from __future__ import annotations

from typing import Any

from casa_eval.registry import all_models


def model_manifests() -> list[Any]:
    from lmms_eval.models.registry_v2 import ModelManifest

    from casa_eval.models._names import adapter_class_name

    return [ModelManifest(model_id=name, simple_class_path=f"casa_eval.models.adapter.{adapter_class_name(name)}")
            for name in all_models()]
