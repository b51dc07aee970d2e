"""`python -m casa_eval` is `casa-eval`."""

from casa_eval.cli import main

main()
