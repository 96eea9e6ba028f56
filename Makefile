.DEFAULT_GOAL := help
V := .venv/bin

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

venv: ## create .venv and install the project (first use, or pyproject.toml changed)
	@bash -c 'source scripts/venv.sh'

fmt: venv ## format the code
	$(V)/ruff format .
	$(V)/ruff check --fix .

lint: ## scripts/lint.sh: ruff, ruff format --check, mypy --strict, lint-imports (layers)
	./scripts/lint.sh

test: ## the README's test command: local Kafka + every test
	./scripts/test.sh

bench: venv ## the embedded benchmark, then the Kafka suite
	$(V)/python -m benchmarks.bench_embedded
	$(V)/clearance bench

up: venv ## start the local broker and create the topics
	$(V)/clearance broker start
	$(V)/clearance topics create
