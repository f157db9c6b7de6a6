# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test bootstrap lint

bootstrap:
	./scripts/bootstrap.sh

run: bootstrap
	.venv/bin/python scripts/run_hub.py

test: bootstrap
	.venv/bin/python scripts/run_tests.py

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy hub workers
