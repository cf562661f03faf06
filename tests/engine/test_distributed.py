"""Where a process stands in a distributed run (torchrun's or SLURM's variables), and the SLURM launcher config."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from framework.config import CONFIG_DIR
from framework.engine.distributed import DistInfo, env_info

DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")


@pytest.fixture
def clean_env(monkeypatch):
    for var in DIST_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_single_process_by_default(clean_env):
    assert env_info() == DistInfo(0, 1, 0) and not env_info().enabled and env_info().is_main


def test_torchrun_variables(clean_env):
    clean_env.setenv("RANK", "5")
    clean_env.setenv("WORLD_SIZE", "16")
    clean_env.setenv("LOCAL_RANK", "1")
    clean_env.setenv("SLURM_PROCID", "0")  # torchrun inside a SLURM allocation: torchrun's ranks win
    clean_env.setenv("SLURM_NTASKS", "2")
    info = env_info()
    assert info == DistInfo(5, 16, 1) and info.enabled and not info.is_main


def test_slurm_tasks_are_ranks(clean_env):
    clean_env.setenv("SLURM_PROCID", "3")
    clean_env.setenv("SLURM_NTASKS", "8")
    clean_env.setenv("SLURM_LOCALID", "3")
    assert env_info() == DistInfo(3, 8, 3)
    clean_env.setenv("SLURM_NTASKS", "1")  # a one-task job (e.g. an interactive allocation) is not distributed
    assert not env_info().enabled


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm"])
def test_slurm_launcher_config_composes(launcher):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"hydra/launcher={launcher}", "hydra.launcher.nodes=2", "model=retinanet_r50_fpn"],
                      return_hydra_config=True)
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_.endswith("submitit_launcher.SlurmLauncher") and launcher_cfg.nodes == 2
    if launcher == "slurm":  # our preset: one task per GPU
        assert launcher_cfg.tasks_per_node == launcher_cfg.gpus_per_node == 8
    assert cfg.model.head._target_.endswith("RetinaHead")
