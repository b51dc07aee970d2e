"""Class names of the per-model lmms-eval adapters (shared by the light manifest module)."""


def adapter_class_name(model_name: str) -> str:
    return "".join(part.capitalize() for part in model_name.replace("-", "_").split("_")) + "LMM"
