# The two commands of the README. Both install everything first (idempotent).
.PHONY: install demo test bench

install:
	bash scripts/install.sh

demo: install
	bash scripts/demo.sh

test: install
	bash scripts/test.sh

bench: install
	.venv/bin/python benchmarks/conv_throughput.py
