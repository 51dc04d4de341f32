import os

# Keep tests on few threads: the CI machine has 2 cores and tests may run beside other work.
os.environ.setdefault("OMP_NUM_THREADS", "2")
