"""pcmodel's benchmark suite: pcmodel side by side with the other ways to run the same job.

Run it with `python -m benchmarks` (about ten minutes on two cores) or
`python -m benchmarks --quick` (a few seconds, tiny sizes: checks the suite works, the
numbers mean nothing). See `benchmarks/README.md`.
"""
