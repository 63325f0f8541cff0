# The two commands of the README. Both install everything first (idempotent).
.PHONY: install install-test demo test bench

install:
	bash scripts/install.sh

install-test:
	bash scripts/install.sh --reference

demo: install
	bash scripts/demo.sh

test: install-test
	bash scripts/test.sh

bench: install
	.venv/bin/python benchmarks/conv_throughput.py
