"""What the command lines set up for their process."""

import json
import subprocess
import sys
import textwrap

import pytest

# A block far above glibc's largest default mmap threshold (32 MiB),
# written twice: the page faults of each writing.
_FAULTS = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from kernelgan_jax import commands
    kept = commands.keep_freed_memory() if sys.argv[1] == "kept" else None
    faults = []
    for _ in range(2):
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      block = np.ones(96 << 18, np.float32)  # 96 MiB, every page touched.
      faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
      del block
    print(json.dumps({"kept": kept, "faults": faults}))
""")


def _faults(mode: str) -> dict:
  done = subprocess.run([sys.executable, "-c", _FAULTS, mode],
                        capture_output=True, text=True, check=True)
  return json.loads(done.stdout.splitlines()[-1])


def test_freed_memory_is_reused_instead_of_mapped_again():
  kept = _faults("kept")
  if not kept["kept"]:
    pytest.skip("not glibc: the process's malloc is left as it is")
  default = _faults("default")
  # By default the block is mapped afresh, so its pages (huge pages where
  # the kernel gives them) fault in both times.
  first, second = default["faults"]
  assert first > 40 and second > first // 2
  # Kept, the second block reuses the first one's pages.
  first, second = kept["faults"]
  assert first > 40 and second < first // 10
