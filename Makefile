# The two commands of the README. Each sets up what it needs first (tools/setup.sh).
.PHONY: setup test demo

setup:
	bash tools/setup.sh

test: setup
	.venv/bin/python -m pytest tests

demo: setup
	.venv/bin/python tools/demo.py --out demo_out
