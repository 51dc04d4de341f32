import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The model tests use tiny frames: one thread is as fast, and it stays fast on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
