"""The one device choice."""
import pytest
import torch

from tinygpt.runtime import pick_device


def test_cpu_is_the_default_and_auto_follows_the_machine():
    assert pick_device() == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bad_device_choices_are_clear_errors():
    with pytest.raises(ValueError, match="must be"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            pick_device("cuda")


@pytest.mark.gpu
def test_cuda_is_picked_when_present():
    assert pick_device("auto") == "cuda"
