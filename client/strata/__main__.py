from strata.cli import run

run()
