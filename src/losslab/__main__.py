"""`python -m losslab` runs the same CLI as the `losslab` console script."""

from losslab.cli import main

main()
