"""The one device choice, and where a measurement says it came from."""
import pytest
import torch

from tinygpt import runtime
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


def test_machine_info_names_the_cpu_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\n"
                    "model name\t: Intel(R) Xeon(R) Gold 6338\n\nprocessor\t: 1\n"
                    "vendor_id\t: GenuineIntel\nmodel name\t: other\n")
    assert runtime.cpu_info(info) == {"vendor": "GenuineIntel", "model": "Intel(R) Xeon(R) Gold 6338",
                                      "family_number": "6", "model_number": "106"}
    machine = runtime.machine_info(["torch", "no-such-package"])
    assert machine["cpu_model"] == runtime.cpu_info()["model"]
    assert machine["packages"]["torch"].startswith("2.") and machine["packages"]["no-such-package"] is None
