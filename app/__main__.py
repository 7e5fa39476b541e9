"""`python -m app` is the flowledger command."""
from app.cli import main

main()
