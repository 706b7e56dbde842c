"""Speed and memory benchmarks (``make bench``); results are recorded in docs/benchmarks.md."""
