# The two commands of the README. Each sets up what it needs first (tools/setup.sh).
.PHONY: setup test test-fast demo

setup:
	bash tools/setup.sh

test: setup
	.venv/bin/python -m pytest tests

# the inner loop: everything but the tests marked slow (about 40 s on 2 cores)
test-fast: setup
	.venv/bin/python -m pytest tests -m "not slow"

demo: setup
	.venv/bin/python tools/demo.py --out demo_out
