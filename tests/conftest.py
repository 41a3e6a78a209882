import os

import pytest
import torch

# Reproducible, single-threaded tests (pytest-xdist runs two workers on two cores).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request):
    return torch.device(request.param)
