"""`python -m cajajejo.cli`: the same as the `cajajejo` command."""

from cajajejo.cli import main

main()
