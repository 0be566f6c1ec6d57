"""On a GPU machine: the evaluation picks the GPU and says so. Skipped cleanly elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from cajajejo.evaluation.runner import describe_device


@pytest.mark.gpu
def test_the_gpu_is_used_and_named() -> None:
    import torch

    assert describe_device() == f"cuda:0 ({torch.cuda.get_device_name(0)})"


@pytest.mark.gpu
def test_quickstart_on_the_gpu(tmp_path: Path) -> None:
    from cajajejo.evaluation.quickstart import quickstart
    from tests.support import DEBUG_EXAMPLE, DEBUG_RUN_SPECS

    result = quickstart(tmp_path, DEBUG_EXAMPLE, DEBUG_RUN_SPECS)
    assert result.device.startswith("cuda:0")
    assert result.failed == ()
