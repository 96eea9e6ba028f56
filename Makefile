.DEFAULT_GOAL := help
V := .venv/bin

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

venv: ## create .venv and install the project (first use, or pyproject.toml changed)
	@bash -c 'source scripts/venv.sh'

fmt: venv ## format the code
	$(V)/ruff format pipeline agents benchmarks tests
	$(V)/ruff check --fix pipeline agents benchmarks tests

lint: venv ## ruff, ruff format --check, mypy --strict
	$(V)/ruff check pipeline agents benchmarks tests
	$(V)/ruff format --check pipeline agents benchmarks tests
	$(V)/mypy --strict pipeline agents

test: ## the README's test command: local Kafka + every test
	./scripts/test.sh

bench: venv ## the embedded benchmark, then the Kafka suite
	$(V)/python -m benchmarks.bench_embedded
	$(V)/clearance bench

up: venv ## start the local broker and create the topics
	$(V)/clearance broker start
	$(V)/clearance topics create
