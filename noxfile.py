"""Developer sessions: `uvx nox -s tests lint typecheck`, and the model tests against each supported
transformers version (`uvx nox -s "transformers(4.51)" "transformers(4.57)" "transformers(5)"`)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests"]

# Supported transformers versions: 4.51.3 is what Kyutai's remote code pins; 4.57 is the last 4.x; 5.x current.
TRANSFORMERS = {"4.51": "transformers==4.51.3", "4.57": "transformers==4.57.6", "5": "transformers>=5,<6"}


def _install(session: nox.Session, *extra: str) -> None:
    session.run_install("uv", "sync", "--frozen", "--group", "dev",
                        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location})
    if extra:
        session.run_install("uv", "pip", "install", *extra,
                            env={"VIRTUAL_ENV": session.virtualenv.location})


@nox.session
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    _install(session)
    session.run("ruff", "check", "casa_eval", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    _install(session)
    session.run("mypy", "casa_eval")


@nox.session(name="transformers")
@nox.parametrize("version", list(TRANSFORMERS), ids=list(TRANSFORMERS))
def transformers_versions(session: nox.Session, version: str) -> None:
    """The fusion zoo, streaming, adapter, family and Kyutai-export tests against one transformers version."""
    _install(session, TRANSFORMERS[version])
    session.run("python", "-c", "import transformers; print('transformers', transformers.__version__)")
    session.run("pytest", "tests/fusion", "tests/streaming", "tests/models", *session.posargs)
